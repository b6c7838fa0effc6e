//! `skein consume`: prints records of a topic (all partitions, or one) from a start position.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use skein_client::{
    Admin, Client, Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, TopicPartition,
};
use tokio::time::Instant;

use super::write_stdout;
use crate::args::{ConsumeArgs, RecordFormat};
use crate::output::record_json;

/// Appends one record to `out` in the chosen format, newline-terminated.
pub(crate) fn format_record(out: &mut Vec<u8>, r: &ConsumerRecord, format: RecordFormat) {
    match format {
        RecordFormat::Text => {
            out.extend_from_slice(r.value.as_deref().unwrap_or_default());
        }
        RecordFormat::Json => out.extend_from_slice(record_json(r).to_string().as_bytes()),
    }
    out.push(b'\n');
}

/// The long-poll wait: short enough for `--idle-timeout` to be honoured promptly.
pub(crate) fn fetch_wait(idle_timeout: Option<Duration>) -> Duration {
    let default = Duration::from_millis(500);
    idle_timeout.map_or(default, |d| d.clamp(Duration::from_millis(10), default))
}

pub async fn run(client: &Client, a: ConsumeArgs) -> Result<()> {
    let topic = Admin::new(client.clone())
        .describe_topic(&a.topic)
        .await
        .with_context(|| format!("read topic {}", a.topic))?;
    let count = topic.partitions.len() as u32;
    let tps: Vec<TopicPartition> = match a.partition {
        Some(p) if p >= count => bail!(
            "topic {} has {count} partitions (0..={}); pick one of those with --partition",
            a.topic,
            count.saturating_sub(1)
        ),
        Some(p) => vec![TopicPartition::new(&a.topic, p)],
        None => topic
            .partitions
            .iter()
            .map(|p| TopicPartition::new(&a.topic, p.partition))
            .collect(),
    };
    let mut consumer = Consumer::new(
        client.clone(),
        ConsumerConfig {
            fetch_wait_max: fetch_wait(a.idle_timeout),
            offset_reset: if a.from_beginning {
                OffsetReset::Earliest
            } else {
                OffsetReset::Latest
            },
            ..ConsumerConfig::default()
        },
    )?;
    consumer.assign(tps.clone());
    if a.from_beginning {
        consumer
            .seek_to_beginning(&[])
            .await
            .context("seek to the beginning")?;
    } else if let (Some(offset), Some(tp)) = (a.offset, tps.first()) {
        consumer.seek(tp, offset)?;
    } else if let Some(ts) = a.from_datetime {
        consumer
            .seek_to_timestamp(&[], ts)
            .await
            .context("seek to the datetime")?;
    } else {
        consumer.seek_to_end(&[]).await.context("seek to the end")?;
    }

    let max = a.max_messages.unwrap_or(u64::MAX);
    let mut printed = 0u64;
    let mut last_record = Instant::now();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut out = Vec::with_capacity(64 * 1024);
    while printed < max {
        let records = tokio::select! {
            r = consumer.poll() => r.with_context(|| format!("consume from {}", a.topic))?,
            _ = &mut interrupted => break,
        };
        if records.is_empty() {
            if a.idle_timeout
                .is_some_and(|idle| last_record.elapsed() >= idle)
            {
                break;
            }
            continue;
        }
        last_record = Instant::now();
        out.clear();
        for r in &records {
            if printed >= max {
                break;
            }
            format_record(&mut out, r, a.output);
            printed += 1;
        }
        if !write_stdout(&out)? {
            // The reader closed the pipe (`| head`): it has seen enough.
            break;
        }
    }
    eprintln!("consumed {printed} records");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn record(value: Option<&'static [u8]>) -> ConsumerRecord {
        ConsumerRecord {
            topic: "t".into(),
            partition: 0,
            offset: 7,
            timestamp: 0,
            key: None,
            value: value.map(Bytes::from_static),
            headers: vec![],
        }
    }

    #[test]
    fn text_prints_one_value_per_line() {
        let mut out = Vec::new();
        format_record(&mut out, &record(Some(b"hello")), RecordFormat::Text);
        format_record(&mut out, &record(None), RecordFormat::Text);
        assert_eq!(out, b"hello\n\n");
    }

    #[test]
    fn json_prints_one_object_per_line() {
        let mut out = Vec::new();
        format_record(&mut out, &record(Some(b"v")), RecordFormat::Json);
        let s = String::from_utf8(out).expect("utf8");
        assert!(s.ends_with("}\n") && s.matches('\n').count() == 1, "{s}");
        let v: serde_json::Value = serde_json::from_str(s.trim()).expect("json");
        assert_eq!(v["offset"], 7);
        assert_eq!(v["value"], "v");
    }

    #[test]
    fn fetch_wait_follows_the_idle_timeout() {
        assert_eq!(fetch_wait(None), Duration::from_millis(500));
        assert_eq!(
            fetch_wait(Some(Duration::from_millis(100))),
            Duration::from_millis(100)
        );
        assert_eq!(
            fetch_wait(Some(Duration::from_secs(60))),
            Duration::from_millis(500)
        );
        assert_eq!(fetch_wait(Some(Duration::ZERO)), Duration::from_millis(10));
    }
}
