//! `skein consume`: prints records of a topic (all partitions, or one) from a start position.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use skein_client::{
    Admin, Client, Consumer, ConsumerConfig, ConsumerRecord, GroupConsumer, GroupConsumerConfig,
    GroupEvent, OffsetReset, TopicPartition,
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
    if let Some(group) = a.group.clone() {
        return run_group(client, a, &group).await;
    }
    let tps = partitions_to_read(client, &a).await?;
    let mut consumer = Consumer::new(
        client.clone(),
        ConsumerConfig {
            fetch_wait_max: fetch_wait(a.idle_timeout),
            offset_reset: a.reset_policy(),
            ..ConsumerConfig::default()
        },
    )?;
    consumer.assign(tps.clone());
    start_positions(&mut consumer, &a, &tps).await?;
    let mut p = Printing::new(&a);
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    while !p.done() {
        let records = tokio::select! {
            r = consumer.poll() => r.with_context(|| format!("consume from {}", a.topic))?,
            _ = &mut interrupted => break,
        };
        if records.is_empty() {
            if p.idle() {
                break;
            }
            continue;
        }
        if !p.print(&records)? {
            // The reader closed the pipe (`| head`): it has seen enough.
            break;
        }
    }
    eprintln!("consumed {} records", p.printed);
    Ok(())
}

/// The partitions `consume` without a group reads: `--partition`, or all of the topic.
async fn partitions_to_read(client: &Client, a: &ConsumeArgs) -> Result<Vec<TopicPartition>> {
    let topic = Admin::new(client.clone())
        .describe_topic(&a.topic)
        .await
        .with_context(|| format!("read topic {}", a.topic))?;
    let count = topic.partitions.len() as u32;
    Ok(match a.partition {
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
    })
}

/// Sets the start position of every partition, as the flags say.
async fn start_positions(
    consumer: &mut Consumer,
    a: &ConsumeArgs,
    tps: &[TopicPartition],
) -> Result<()> {
    if let (Some(offset), Some(tp)) = (a.offset, tps.first()) {
        // An explicit offset must be in the log: one past its end would wait for records that
        // may never come, one before its start was deleted.
        return consumer
            .seek_in_range(tp, offset)
            .await
            .with_context(|| {
                format!("cannot start at offset {offset}: pick --offset within the log's bounds, or --from-beginning")
            });
    }
    if let Some(ts) = a.from_datetime {
        return consumer
            .seek_to_timestamp(&[], ts)
            .await
            .context("seek to the datetime");
    }
    match a.reset_policy() {
        OffsetReset::Earliest => consumer
            .seek_to_beginning(&[])
            .await
            .context("seek to the beginning"),
        OffsetReset::Latest => consumer.seek_to_end(&[]).await.context("seek to the end"),
        OffsetReset::Error => bail!(
            "--reset none: no start position for topic {}; say where to start with \
             --from-beginning, --partition P --offset N or --from-datetime, or use \
             --reset earliest|latest",
            a.topic
        ),
    }
}

/// What one `consume` run has printed, and when it stops.
#[derive(Debug)]
pub(crate) struct Printing {
    max: u64,
    idle_timeout: Option<Duration>,
    format: RecordFormat,
    printed: u64,
    last_record: Instant,
    out: Vec<u8>,
}

impl Printing {
    pub(crate) fn new(a: &ConsumeArgs) -> Self {
        Printing {
            max: a.max_messages.unwrap_or(u64::MAX),
            idle_timeout: a.idle_timeout,
            format: a.output,
            printed: 0,
            last_record: Instant::now(),
            out: Vec::with_capacity(64 * 1024),
        }
    }

    /// `--max-messages` records were printed.
    pub(crate) fn done(&self) -> bool {
        self.printed >= self.max
    }

    /// Records still to print before `--max-messages`.
    pub(crate) fn remaining(&self) -> u64 {
        self.max - self.printed.min(self.max)
    }

    /// `--idle-timeout` passed without a record.
    pub(crate) fn idle(&self) -> bool {
        self.idle_timeout
            .is_some_and(|idle| self.last_record.elapsed() >= idle)
    }

    /// Prints `records` (up to `--max-messages`); false when the reader closed the pipe, in
    /// which case none of them counts as printed.
    pub(crate) fn print(&mut self, records: &[ConsumerRecord]) -> Result<bool> {
        self.last_record = Instant::now();
        self.out.clear();
        let n = usize::try_from(self.remaining()).unwrap_or(usize::MAX);
        let take = records.len().min(n);
        for r in &records[..take] {
            format_record(&mut self.out, r, self.format);
        }
        if !write_stdout(&self.out)? {
            return Ok(false);
        }
        self.printed += take as u64;
        Ok(true)
    }
}

/// What the group loop does after an event.
enum Step {
    Continue,
    Stop,
}

/// `consume --group`: joins the group and prints its assignment's records. The position of
/// every assigned partition (the next record not printed) is committed as it moves or becomes
/// known (asynchronously, in order), before partitions are revoked, and before it exits
/// (--max-messages, --idle-timeout, Ctrl-C, a closed pipe, an error) — also for partitions
/// where nothing arrived, so that the next run skips nothing written there meanwhile.
async fn run_group(client: &Client, a: ConsumeArgs, group: &str) -> Result<()> {
    let mut config = GroupConsumerConfig::new(group);
    config.client_id = "skein-cli".to_string();
    // Commits are made here, of exactly what was printed.
    config.enable_auto_commit = false;
    config.auto_offset_reset = a.reset_policy();
    if let Some(s) = a.strategy {
        config.strategy = s;
    }
    config.fetch.fetch_wait_max = fetch_wait(a.idle_timeout);
    let mut consumer = GroupConsumer::new(client.clone(), config)?;
    consumer.subscribe([a.topic.clone()]);
    let mut p = Printing::new(&a);
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut failure = None;
    while !p.done() {
        // Never take more records than will be printed: positions stay "printed up to here".
        consumer.set_max_poll_records(usize::try_from(p.remaining()).unwrap_or(usize::MAX));
        let event = tokio::select! {
            r = consumer.poll_event() => r,
            _ = &mut interrupted => break,
        };
        let step = match event {
            Ok(event) => on_group_event(&mut consumer, event, &mut p).await,
            Err(e) => Err(anyhow::Error::new(e)),
        };
        match step {
            Ok(Step::Continue) => {}
            Ok(Step::Stop) => break,
            Err(e) => {
                failure = Some(e.context(format!("consume from {} as group {group}", a.topic)));
                break;
            }
        }
    }
    let commit = consumer.commit().await;
    let close = consumer.close().await;
    eprintln!("consumed {} records", p.printed);
    if let Some(e) = failure {
        return Err(e);
    }
    commit.with_context(|| format!("commit the positions of group {group}"))?;
    if let Err(e) = close {
        eprintln!("warning: leaving group {group} failed ({e}); the group rebalances after the session timeout");
    }
    Ok(())
}

async fn on_group_event(
    consumer: &mut GroupConsumer,
    event: GroupEvent,
    p: &mut Printing,
) -> Result<Step> {
    match event {
        // Start positions come from the group's commits or the reset policy.
        GroupEvent::Assigned(_) => {}
        GroupEvent::Revoked(_) => {
            // The revoked partitions are still owned: their positions go with this commit.
            if let Err(e) = consumer.commit().await {
                eprintln!("warning: commit before the rebalance failed: {e}");
            }
        }
        GroupEvent::Lost(tps) => eprintln!(
            "warning: lost partitions {} (the group moved on without this member); their \
             records after the last commit will be printed again by their new owner",
            tps.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ),
        GroupEvent::Records(records) => {
            if records.is_empty() && p.idle() {
                return Ok(Step::Stop);
            }
            if !records.is_empty() && !p.print(&records)? {
                // The reader closed the pipe: nothing of this batch is known to be seen.
                rewind(consumer, &records)?;
                return Ok(Step::Stop);
            }
            // Positions moved (records printed) or became known (a partition's start from the
            // reset policy): commit them without waiting; commits are sent in order, and the
            // final commit waits for all of them.
            if let Err(e) = consumer.commit_async().await {
                eprintln!("warning: commit failed: {e}");
            }
        }
    }
    Ok(Step::Continue)
}

/// Moves each partition of `records` back to its first record in them (handed out, not
/// printed), so that a commit does not pass them.
fn rewind(consumer: &mut GroupConsumer, records: &[ConsumerRecord]) -> Result<()> {
    let mut first: BTreeMap<TopicPartition, u64> = BTreeMap::new();
    for r in records {
        first
            .entry(TopicPartition::new(&*r.topic, r.partition))
            .or_insert(r.offset);
    }
    for (tp, offset) in first {
        consumer.seek(&tp, offset)?;
    }
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
