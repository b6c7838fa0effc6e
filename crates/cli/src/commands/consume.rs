//! `skein consume`: prints records of a topic (all partitions, or one) from a start position.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use skein_client::{
    Admin, Client, Consumer, ConsumerConfig, ConsumerRecord, GroupConsumer, GroupConsumerConfig,
    GroupEvent, OffsetAndMetadata, OffsetReset, TopicPartition,
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

/// What a group member has printed: per partition, the offset of the next record to print
/// (what a commit sends).
#[derive(Debug, Default)]
pub(crate) struct Printed {
    next: BTreeMap<TopicPartition, u64>,
    /// Partitions printed from since the last commit.
    dirty: BTreeMap<TopicPartition, u64>,
}

impl Printed {
    pub(crate) fn record(&mut self, r: &ConsumerRecord) {
        let tp = TopicPartition::new(&*r.topic, r.partition);
        self.next.insert(tp.clone(), r.offset + 1);
        self.dirty.insert(tp, r.offset + 1);
    }

    /// The offsets not committed yet (and forgets that they are pending).
    pub(crate) fn take_dirty(&mut self) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
        std::mem::take(&mut self.dirty)
            .into_iter()
            .map(|(tp, o)| (tp, OffsetAndMetadata::new(o)))
            .collect()
    }

    /// Every printed position of `tps`, for a commit before they are revoked.
    pub(crate) fn of(&self, tps: &[TopicPartition]) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
        tps.iter()
            .filter_map(|tp| {
                self.next
                    .get(tp)
                    .map(|o| (tp.clone(), OffsetAndMetadata::new(*o)))
            })
            .collect()
    }

    /// Forgets partitions this member no longer owns.
    pub(crate) fn forget(&mut self, tps: &[TopicPartition]) {
        for tp in tps {
            self.next.remove(tp);
            self.dirty.remove(tp);
        }
    }

    /// Every printed position.
    pub(crate) fn all(&self) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
        self.next
            .iter()
            .map(|(tp, o)| (tp.clone(), OffsetAndMetadata::new(*o)))
            .collect()
    }
}

/// `consume --group`: joins the group, prints its assignment's records, commits what it has
/// printed as it goes (asynchronously, in order), before partitions are revoked, and before it
/// exits (--max-messages, --idle-timeout, Ctrl-C, a closed pipe).
async fn run_group(client: &Client, a: ConsumeArgs, group: &str) -> Result<()> {
    let mut config = GroupConsumerConfig::new(group);
    config.client_id = "skein-cli".to_string();
    // Commits are made here, of exactly what was printed.
    config.enable_auto_commit = false;
    config.auto_offset_reset = if a.from_beginning {
        OffsetReset::Earliest
    } else {
        OffsetReset::Latest
    };
    if let Some(s) = a.strategy {
        config.strategy = s;
    }
    config.fetch.fetch_wait_max = fetch_wait(a.idle_timeout);
    let mut consumer = GroupConsumer::new(client.clone(), config)?;
    consumer.subscribe([a.topic.clone()]);
    let max = a.max_messages.unwrap_or(u64::MAX);
    if let Some(m) = a.max_messages {
        // Never take more records than will be printed.
        consumer.set_max_poll_records(usize::try_from(m).unwrap_or(usize::MAX));
    }
    let mut printed_count = 0u64;
    let mut printed = Printed::default();
    let mut last_record = Instant::now();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut out = Vec::with_capacity(64 * 1024);
    let mut failure = None;
    while printed_count < max {
        let event = tokio::select! {
            r = consumer.poll_event() => r,
            _ = &mut interrupted => break,
        };
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                failure = Some(
                    anyhow::Error::new(e)
                        .context(format!("consume from {} as group {group}", a.topic)),
                );
                break;
            }
        };
        match event {
            // Start positions come from the group's commits; nothing to do here.
            GroupEvent::Assigned(_) => {}
            GroupEvent::Revoked(tps) => {
                if let Err(e) = consumer.commit_offsets(printed.of(&tps)).await {
                    eprintln!("warning: commit before the rebalance failed: {e}");
                }
                printed.forget(&tps);
            }
            GroupEvent::Lost(tps) => {
                eprintln!(
                    "warning: lost partitions {} (the group moved on without this member);                      their records after the last commit will be printed again by their new owner",
                    tps.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
                );
                printed.forget(&tps);
            }
            GroupEvent::Records(records) if records.is_empty() => {
                if a.idle_timeout
                    .is_some_and(|idle| last_record.elapsed() >= idle)
                {
                    break;
                }
            }
            GroupEvent::Records(records) => {
                last_record = Instant::now();
                out.clear();
                let mut batch = Vec::with_capacity(records.len());
                for r in &records {
                    if printed_count >= max {
                        break;
                    }
                    format_record(&mut out, r, a.output);
                    batch.push(r);
                    printed_count += 1;
                }
                if !write_stdout(&out)? {
                    // The reader closed the pipe: nothing of this batch is known to be seen.
                    break;
                }
                for r in batch {
                    printed.record(r);
                }
                // Commit as we go; the acknowledgement is not waited for (commits are sent
                // in order, and the final commit below waits for all of them).
                let pending = printed.take_dirty();
                if let Err(e) = consumer.commit_offsets_async(pending).await {
                    eprintln!("warning: commit failed: {e}");
                }
            }
        }
    }
    let commit = consumer.commit_offsets(printed.all()).await;
    let close = consumer.close().await;
    eprintln!("consumed {printed_count} records");
    if let Some(e) = failure {
        return Err(e);
    }
    commit.with_context(|| format!("commit the printed offsets of group {group}"))?;
    if let Err(e) = close {
        eprintln!("warning: leaving group {group} failed ({e}); the group rebalances after the session timeout");
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
    fn printed_offsets_are_committed_as_next_offsets() {
        let mut p = Printed::default();
        let mut r = record(Some(b"a"));
        p.record(&r);
        r.offset = 8;
        p.record(&r);
        r.partition = 1;
        r.offset = 2;
        p.record(&r);
        let tp0 = TopicPartition::new("t", 0);
        let tp1 = TopicPartition::new("t", 1);
        let dirty = p.take_dirty();
        assert_eq!(
            dirty[&tp0].offset, 9,
            "the next record after the last printed"
        );
        assert_eq!(dirty[&tp1].offset, 3);
        assert!(p.take_dirty().is_empty(), "taken once");
        assert_eq!(p.of(std::slice::from_ref(&tp1)).len(), 1);
        p.forget(std::slice::from_ref(&tp1));
        assert_eq!(p.all().keys().cloned().collect::<Vec<_>>(), vec![tp0]);
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
