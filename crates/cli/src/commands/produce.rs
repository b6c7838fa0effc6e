//! `skein produce`: one record from `--value`, or one record per line of standard input.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use skein_client::{Client, ClientError, DeliveryFuture, Producer, ProducerConfig, ProducerRecord};
use tokio::io::AsyncBufReadExt;

use crate::args::ProduceArgs;

/// Records sent and not yet awaited; bounds memory for endless input.
const IN_FLIGHT_RECORDS_MAX: usize = 10_000;

/// Splits an input line into key and value at the first `sep`.
pub(crate) fn split_line<'a>(line: &'a [u8], sep: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    if sep.is_empty() || line.len() < sep.len() {
        return None;
    }
    let at = line.windows(sep.len()).position(|w| w == sep)?;
    Some((&line[..at], &line[at + sep.len()..]))
}

/// Removes one trailing `\n` or `\r\n`.
pub(crate) fn trim_newline(mut line: &[u8]) -> &[u8] {
    if let Some(rest) = line.strip_suffix(b"\n") {
        line = rest;
        if let Some(rest) = line.strip_suffix(b"\r") {
            line = rest;
        }
    }
    line
}

#[derive(Debug, Default)]
struct Tally {
    acked: u64,
    failed: u64,
    first_failure: Option<(u64, ClientError)>,
}

impl Tally {
    async fn settle(&mut self, line: u64, d: DeliveryFuture) {
        match d.await {
            Ok(_) => self.acked += 1,
            Err(e) => self.fail(line, e),
        }
    }

    fn fail(&mut self, line: u64, e: ClientError) {
        self.failed += 1;
        if self.first_failure.is_none() {
            self.first_failure = Some((line, e));
        }
    }
}

pub async fn run(client: &Client, a: ProduceArgs) -> Result<()> {
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            acks: a.acks,
            compression: a.compression,
            ..ProducerConfig::default()
        },
    )
    .await
    .context("start producer")?;

    let record = |key: Option<Vec<u8>>, value: Vec<u8>| {
        let mut r = ProducerRecord::new(a.topic.clone(), value);
        if let Some(k) = key {
            r = r.key(k);
        }
        if let Some(p) = a.partition {
            r = r.partition(p);
        }
        r
    };

    if let Some(value) = &a.value {
        let meta = producer
            .send_and_wait(record(
                a.key.as_ref().map(|k| k.as_bytes().to_vec()),
                value.as_bytes().to_vec(),
            ))
            .await
            .with_context(|| format!("produce to {}", a.topic))?;
        eprintln!(
            "record written to {}:{} at offset {}",
            meta.topic, meta.partition, meta.offset
        );
        return Ok(());
    }

    let interactive = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut last_progress = Instant::now();
    let mut reader = tokio::io::BufReader::new(tokio::io::stdin());
    let mut buf = Vec::new();
    let mut window: VecDeque<(u64, DeliveryFuture)> = VecDeque::new();
    let mut tally = Tally::default();
    let mut line_no = 0u64;
    let mut stopped: Option<anyhow::Error> = None;
    let sep = a.key_separator.as_deref().map(str::as_bytes);
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .await
            .context("read standard input")?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let line = trim_newline(&buf);
        let (key, value) = match sep {
            Some(sep) => match split_line(line, sep) {
                Some((k, v)) => (Some(k.to_vec()), v.to_vec()),
                None => {
                    stopped = Some(anyhow::anyhow!(
                        "line {line_no} has no key separator `{}`; every line must be KEY{}VALUE",
                        a.key_separator.as_deref().unwrap_or_default(),
                        a.key_separator.as_deref().unwrap_or_default()
                    ));
                    break;
                }
            },
            None => (a.key.as_ref().map(|k| k.as_bytes().to_vec()), line.to_vec()),
        };
        match producer.send(record(key, value)).await {
            Ok(d) => window.push_back((line_no, d)),
            Err(e @ ClientError::RecordTooLarge { .. }) => tally.fail(line_no, e),
            Err(e) => {
                // Not about this record (unknown topic, unreachable cluster): stop reading.
                tally.fail(line_no, e);
                break;
            }
        }
        while window.len() > IN_FLIGHT_RECORDS_MAX {
            if let Some((l, d)) = window.pop_front() {
                tally.settle(l, d).await;
            }
        }
        if interactive && last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            eprint!(
                "\rproduced {} records ({} acknowledged)",
                line_no, tally.acked
            );
        }
    }
    producer.flush().await.context("flush producer")?;
    while let Some((l, d)) = window.pop_front() {
        tally.settle(l, d).await;
    }
    if interactive && started.elapsed() >= Duration::from_secs(1) {
        eprintln!();
    }
    eprintln!(
        "{} records acknowledged by {} ({} failed) in {:.1?}",
        tally.acked,
        a.topic,
        tally.failed,
        started.elapsed()
    );
    if let Some((line, e)) = tally.first_failure {
        bail!(
            "{} of {} records were not acknowledged; the first failure (line {line}): {e}",
            tally.failed,
            line_no
        );
    }
    if let Some(e) = stopped {
        return Err(e.context(format!(
            "stopped after {} records; the rest of the input was not sent",
            tally.acked
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_at_the_first_separator() {
        assert_eq!(split_line(b"k:v:w", b":"), Some((&b"k"[..], &b"v:w"[..])));
        assert_eq!(
            split_line(b"key=>value", b"=>"),
            Some((&b"key"[..], &b"value"[..]))
        );
        assert_eq!(split_line(b":v", b":"), Some((&b""[..], &b"v"[..])));
        assert_eq!(split_line(b"novalue", b":"), None);
        assert_eq!(split_line(b"a", b"::"), None);
        assert_eq!(split_line(b"a:b", b""), None);
    }

    #[test]
    fn newlines_are_trimmed_once() {
        assert_eq!(trim_newline(b"abc\n"), b"abc");
        assert_eq!(trim_newline(b"abc\r\n"), b"abc");
        assert_eq!(trim_newline(b"abc"), b"abc");
        assert_eq!(trim_newline(b"abc\n\n"), b"abc\n");
        assert_eq!(trim_newline(b"\n"), b"");
    }
}
