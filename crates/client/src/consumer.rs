//! The consumer (manual assignment): fetches assigned partitions from their leaders with
//! long-poll fetches and hands out records in offset order per partition.

use std::collections::{BTreeMap, HashMap, VecDeque};

use futures_util::Stream;
use skein_proto::v1 as pb;
use skein_proto::v1::fetch_service_client::FetchServiceClient;
use tokio::time::Instant;

use crate::admin::{list_offsets, OffsetSpec};
use crate::cluster::{timed, Client, RESPONSE_BYTES_MAX};
use crate::config::{ConsumerConfig, OffsetReset};
use crate::decode::decode_fetched;
use crate::error::{ClientError, Result};
use crate::record::{ConsumerRecord, TopicPartition};

#[derive(Debug, Clone, Default)]
struct PartitionState {
    /// Next offset to fetch; `None` until a start position is known.
    fetch_position: Option<u64>,
    paused: bool,
    high_watermark: Option<u64>,
    log_start_offset: Option<u64>,
    /// Do not fetch before this (after a retryable error).
    backoff_until: Option<Instant>,
    /// Consecutive retryable errors.
    errors: u32,
}

/// Reads records from partitions it is assigned (consumer groups come later).
///
/// Positions start at the configured [`OffsetReset`] (latest by default) unless set with
/// [`Consumer::seek`] and friends. See the crate documentation for an example.
#[derive(Debug)]
pub struct Consumer {
    client: Client,
    config: ConsumerConfig,
    assignment: BTreeMap<TopicPartition, PartitionState>,
    /// Fetched records not yet handed out, in fetch order (offset order per partition).
    buffer: VecDeque<ConsumerRecord>,
}

impl Consumer {
    /// A consumer on `client` with no partitions assigned.
    pub fn new(client: Client, config: ConsumerConfig) -> Result<Self> {
        config.validate()?;
        Ok(Consumer {
            client,
            config,
            assignment: BTreeMap::new(),
            buffer: VecDeque::new(),
        })
    }

    /// Replaces the assignment. Partitions kept keep their positions.
    pub fn assign(&mut self, partitions: impl IntoIterator<Item = TopicPartition>) {
        let mut next = BTreeMap::new();
        for tp in partitions {
            let state = self.assignment.remove(&tp).unwrap_or_default();
            next.insert(tp, state);
        }
        self.assignment = next;
        let assignment = &self.assignment;
        self.buffer
            .retain(|r| assignment.contains_key(&TopicPartition::new(&*r.topic, r.partition)));
    }

    /// Assigns every partition of `topic`.
    pub async fn assign_topic(&mut self, topic: &str) -> Result<Vec<TopicPartition>> {
        let t = self.client.retry(None, || self.client.topic(topic)).await?;
        let tps: Vec<TopicPartition> = t
            .partitions
            .iter()
            .map(|p| TopicPartition::new(topic, p.partition))
            .collect();
        let mut all: Vec<TopicPartition> = self.assignment.keys().cloned().collect();
        all.extend(tps.iter().cloned());
        self.assign(all);
        Ok(tps)
    }

    /// The assigned partitions.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.assignment.keys().cloned().collect()
    }

    fn state_mut(&mut self, tp: &TopicPartition) -> Result<&mut PartitionState> {
        self.assignment
            .get_mut(tp)
            .ok_or_else(|| ClientError::NotAssigned {
                what: format!("partition {tp}"),
            })
    }

    fn drop_buffered(&mut self, tp: &TopicPartition) -> Option<u64> {
        let mut first = None;
        self.buffer.retain(|r| {
            let keep = !(*r.topic == *tp.topic && r.partition == tp.partition);
            if !keep && first.is_none() {
                first = Some(r.offset);
            }
            keep
        });
        first
    }

    /// The next records of `tp` will start at `offset`.
    pub fn seek(&mut self, tp: &TopicPartition, offset: u64) -> Result<()> {
        self.state_mut(tp)?;
        self.drop_buffered(tp);
        let s = self.state_mut(tp)?;
        s.fetch_position = Some(offset);
        s.backoff_until = None;
        Ok(())
    }

    fn targets(&self, tps: &[TopicPartition]) -> Result<Vec<TopicPartition>> {
        if tps.is_empty() {
            return Ok(self.assignment());
        }
        for tp in tps {
            if !self.assignment.contains_key(tp) {
                return Err(ClientError::NotAssigned {
                    what: format!("partition {tp}"),
                });
            }
        }
        Ok(tps.to_vec())
    }

    async fn seek_to_spec(&mut self, tps: &[TopicPartition], spec: OffsetSpec) -> Result<()> {
        let targets = self.targets(tps)?;
        let queries: Vec<(TopicPartition, OffsetSpec)> =
            targets.into_iter().map(|tp| (tp, spec)).collect();
        let answers = list_offsets(&self.client, &queries).await?;
        for a in answers {
            self.drop_buffered(&a.tp);
            let s = self.state_mut(&a.tp)?;
            s.fetch_position = Some(a.offset);
            s.high_watermark = Some(a.high_watermark);
            s.log_start_offset = Some(a.log_start_offset);
        }
        Ok(())
    }

    /// Like [`Consumer::seek`], but first checks that `offset` is in the log: between the log
    /// start offset and the high watermark (both included: the high watermark is where the
    /// next record will be). Outside, [`ClientError::OffsetOutOfRange`] names both bounds.
    pub async fn seek_in_range(&mut self, tp: &TopicPartition, offset: u64) -> Result<()> {
        self.state_mut(tp)?;
        let answers = list_offsets(&self.client, &[(tp.clone(), OffsetSpec::Latest)]).await?;
        let Some(a) = answers.into_iter().next() else {
            return Err(ClientError::CorruptResponse {
                what: format!("list offsets of {tp}"),
                reason: "no answer for the partition".into(),
            });
        };
        if !(a.log_start_offset..=a.high_watermark).contains(&offset) {
            return Err(out_of_range(
                tp,
                offset,
                a.log_start_offset,
                a.high_watermark,
            ));
        }
        self.seek(tp, offset)?;
        let s = self.state_mut(tp)?;
        s.log_start_offset = Some(a.log_start_offset);
        s.high_watermark = Some(a.high_watermark);
        Ok(())
    }

    /// Moves `tps` (all assigned partitions when empty) to their log start offsets.
    pub async fn seek_to_beginning(&mut self, tps: &[TopicPartition]) -> Result<()> {
        self.seek_to_spec(tps, OffsetSpec::Earliest).await
    }

    /// Moves `tps` (all assigned partitions when empty) to their high watermarks: only records
    /// produced from now on are read.
    pub async fn seek_to_end(&mut self, tps: &[TopicPartition]) -> Result<()> {
        self.seek_to_spec(tps, OffsetSpec::Latest).await
    }

    /// Moves `tps` (all assigned when empty) to the first record with a timestamp at or after
    /// `timestamp_ms` (the end when there is none).
    pub async fn seek_to_timestamp(
        &mut self,
        tps: &[TopicPartition],
        timestamp_ms: i64,
    ) -> Result<()> {
        self.seek_to_spec(tps, OffsetSpec::Timestamp(timestamp_ms))
            .await
    }

    /// The offset of the next record `poll` returns for `tp`, once known.
    pub fn position(&self, tp: &TopicPartition) -> Option<u64> {
        let buffered = self
            .buffer
            .iter()
            .find(|r| *r.topic == *tp.topic && r.partition == tp.partition)
            .map(|r| r.offset);
        buffered.or(self.assignment.get(tp)?.fetch_position)
    }

    /// The high watermark seen in the last fetch of `tp`.
    pub fn high_watermark(&self, tp: &TopicPartition) -> Option<u64> {
        self.assignment.get(tp)?.high_watermark
    }

    /// Stops fetching `tps` until [`Consumer::resume`]; buffered records of them are dropped
    /// and fetched again after resuming.
    pub fn pause(&mut self, tps: &[TopicPartition]) -> Result<()> {
        for tp in self.targets(tps)? {
            let first = self.drop_buffered(&tp);
            let s = self.state_mut(&tp)?;
            s.paused = true;
            if let Some(first) = first {
                s.fetch_position = Some(first);
            }
        }
        Ok(())
    }

    /// Fetches `tps` again.
    pub fn resume(&mut self, tps: &[TopicPartition]) -> Result<()> {
        for tp in self.targets(tps)? {
            self.state_mut(&tp)?.paused = false;
        }
        Ok(())
    }

    /// The paused partitions.
    pub fn paused(&self) -> Vec<TopicPartition> {
        self.assignment
            .iter()
            .filter(|(_, s)| s.paused)
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    /// Returns buffered records, or fetches once (waiting up to `fetch_wait_max` for records)
    /// and returns what came. An empty answer is normal: nothing new arrived.
    pub async fn poll(&mut self) -> Result<Vec<ConsumerRecord>> {
        if self.buffer.is_empty() {
            self.fetch_once().await?;
        }
        // Hands over the buffer's allocation (no copy when it is contiguous, as it is after
        // a fetch into an empty buffer).
        Ok(Vec::from(std::mem::take(&mut self.buffer)))
    }

    /// The next record, fetching as needed. Waits until a record arrives.
    pub async fn next_record(&mut self) -> Result<ConsumerRecord> {
        loop {
            if let Some(r) = self.buffer.pop_front() {
                return Ok(r);
            }
            self.fetch_once().await?;
        }
    }

    /// Takes up to `max` buffered records (the group consumer hands out records through this,
    /// so that `position` stays "the next record not handed out").
    pub(crate) fn take_buffered(&mut self, max: usize) -> Vec<ConsumerRecord> {
        let n = max.min(self.buffer.len());
        self.buffer.drain(..n).collect()
    }

    /// True when fetched records are waiting to be handed out.
    pub(crate) fn has_buffered(&self) -> bool {
        !self.buffer.is_empty()
    }

    /// One round of fetches (waits up to `fetch_wait_max`). Cancel-safe: positions move only
    /// once a round's answers are all in.
    pub(crate) async fn fill(&mut self) -> Result<()> {
        self.fetch_once().await
    }

    /// Replaces the start-position policy (the group consumer's `auto_offset_reset`).
    pub(crate) fn set_offset_reset(&mut self, reset: OffsetReset) {
        self.config.offset_reset = reset;
    }

    /// The records as a stream (never ends by itself; errors are items, and the stream goes on
    /// after a retryable one).
    pub fn stream(&mut self) -> impl Stream<Item = Result<ConsumerRecord>> + '_ {
        futures_util::stream::unfold(self, |c| async move {
            let r = c.next_record().await;
            Some((r, c))
        })
    }

    /// Sets start positions of partitions that have none, as `offset_reset` says.
    async fn resolve_positions(&mut self) -> Result<()> {
        let missing: Vec<TopicPartition> = self
            .assignment
            .iter()
            .filter(|(_, s)| s.fetch_position.is_none() && !s.paused)
            .map(|(tp, _)| tp.clone())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        match self.config.offset_reset {
            OffsetReset::Earliest => self.seek_to_spec(&missing, OffsetSpec::Earliest).await,
            OffsetReset::Latest => self.seek_to_spec(&missing, OffsetSpec::Latest).await,
            OffsetReset::Error => Err(ClientError::NoStartPosition {
                what: format!(
                    "partition {}",
                    missing
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        }
    }

    /// One round of fetches, one request per leader, in parallel.
    async fn fetch_once(&mut self) -> Result<()> {
        self.resolve_positions().await?;
        let now = Instant::now();
        let due: Vec<(TopicPartition, u64)> = self
            .assignment
            .iter()
            .filter(|(_, s)| !s.paused && s.backoff_until.is_none_or(|t| t <= now))
            .filter_map(|(tp, s)| s.fetch_position.map(|p| (tp.clone(), p)))
            .collect();
        if due.is_empty() {
            // Nothing to fetch now: wait as a long poll would, or until a backoff ends.
            let wake = self
                .assignment
                .values()
                .filter(|s| !s.paused)
                .filter_map(|s| s.backoff_until)
                .min()
                .unwrap_or(now + self.config.fetch_wait_max)
                .min(now + self.config.fetch_wait_max);
            tokio::time::sleep_until(wake).await;
            return Ok(());
        }
        let mut by_leader: HashMap<String, Vec<(TopicPartition, u64)>> = HashMap::new();
        for (tp, offset) in due {
            match self.client.leader(&tp).await {
                Ok((_, addr)) => by_leader.entry(addr).or_default().push((tp, offset)),
                Err(e) => self.partition_failed(&tp, e)?,
            }
        }
        if by_leader.is_empty() {
            return Ok(());
        }
        let config = &self.config;
        let client = &self.client;
        let calls = by_leader.into_iter().map(|(addr, group)| async move {
            let request = pb::FetchRequest {
                partitions: group
                    .iter()
                    .map(|(tp, offset)| pb::PartitionFetch {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        offset: *offset,
                        max_bytes: config.partition_fetch_bytes_max,
                    })
                    .collect(),
                max_wait_ms: u32::try_from(config.fetch_wait_max.as_millis()).unwrap_or(u32::MAX),
                min_bytes: config.fetch_min_bytes,
                max_bytes: config.fetch_bytes_max,
            };
            let limit = client.config().request_timeout + config.fetch_wait_max;
            let result = match client.channel(&addr) {
                Ok(channel) => {
                    let mut c = FetchServiceClient::new(channel)
                        .max_decoding_message_size(RESPONSE_BYTES_MAX);
                    timed("fetch", &addr, limit, c.fetch(request)).await
                }
                Err(e) => Err(e),
            };
            (group, result)
        });
        let results = futures_util::future::join_all(calls).await;
        for (group, result) in results {
            match result {
                Err(e) => {
                    for (tp, _) in group {
                        self.partition_failed(&tp, e.clone())?;
                    }
                }
                Ok(response) => {
                    let mut by_tp: HashMap<(String, u32), pb::PartitionFetchResult> = response
                        .partitions
                        .into_iter()
                        .map(|r| ((r.topic.clone(), r.partition), r))
                        .collect();
                    for (tp, offset) in group {
                        match by_tp.remove(&(tp.topic.clone(), tp.partition)) {
                            Some(r) => self.apply_fetch(&tp, offset, r)?,
                            None => self.partition_failed(
                                &tp,
                                ClientError::CorruptResponse {
                                    what: format!("fetch from {tp}"),
                                    reason: "no result for the partition".into(),
                                },
                            )?,
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn apply_fetch(
        &mut self,
        tp: &TopicPartition,
        offset: u64,
        r: pb::PartitionFetchResult,
    ) -> Result<()> {
        let what = format!("fetch from {tp} at offset {offset}");
        if let Some(e) = ClientError::from_partition_error(&what, r.error.as_ref()) {
            if let ClientError::OffsetOutOfRange { .. } = e {
                let reset = self.config.offset_reset;
                let s = self.state_mut(tp)?;
                s.log_start_offset = Some(r.log_start_offset);
                s.high_watermark = Some(r.high_watermark);
                return match reset {
                    OffsetReset::Error => Err(out_of_range(
                        tp,
                        offset,
                        r.log_start_offset,
                        r.high_watermark,
                    )),
                    OffsetReset::Earliest | OffsetReset::Latest => {
                        tracing::info!(%tp, offset, "offset out of range; resetting");
                        s.fetch_position = None;
                        Ok(())
                    }
                };
            }
            return self.partition_failed(tp, e);
        }
        let decoded = decode_fetched(tp, r.records, offset)?;
        let s = self.state_mut(tp)?;
        s.errors = 0;
        s.backoff_until = None;
        s.high_watermark = Some(r.high_watermark);
        s.log_start_offset = Some(r.log_start_offset);
        let mut next = offset;
        if let Some(last) = decoded.records.last() {
            next = next.max(last.offset + 1);
        }
        if let Some(end) = decoded.next_offset {
            next = next.max(end);
        }
        // The broker's own "where to fetch next", when it moves forward (e.g. past a gap).
        if r.next_offset > next && r.next_offset <= r.high_watermark.max(next) {
            next = r.next_offset;
        }
        s.fetch_position = Some(next);
        if self.buffer.is_empty() {
            // Takes the vector's allocation over instead of copying every record.
            self.buffer = VecDeque::from(decoded.records);
        } else {
            self.buffer.extend(decoded.records);
        }
        Ok(())
    }

    /// Handles a failed fetch of `tp`: retryable errors update metadata and back off (up to
    /// `max_retries` in a row), others are returned.
    fn partition_failed(&mut self, tp: &TopicPartition, e: ClientError) -> Result<()> {
        if !e.is_retryable() {
            return Err(e);
        }
        self.client.on_error(Some(tp), &e);
        let redirected = matches!(
            &e,
            ClientError::NotLeader { leader: Some(h), .. } if !h.client_addr.is_empty()
        );
        let max = self.client.config().max_retries;
        let backoff = self
            .client
            .backoff(self.assignment.get(tp).map_or(0, |s| s.errors));
        let s = self.state_mut(tp)?;
        s.errors += 1;
        if s.errors > max {
            s.errors = 0;
            return Err(e);
        }
        s.backoff_until = if redirected && s.errors == 1 {
            None
        } else {
            Some(Instant::now() + backoff)
        };
        tracing::debug!(%tp, error = %e, "fetch failed; retrying");
        Ok(())
    }
}

/// An explicit position outside `[start, end]` (log start offset, high watermark).
fn out_of_range(tp: &TopicPartition, offset: u64, start: u64, end: u64) -> ClientError {
    ClientError::OffsetOutOfRange {
        what: format!("partition {tp}"),
        message: format!(
            "offset {offset} is outside the log, which holds offsets from {start} (log start) \
             to {end} (high watermark, the next offset written)"
        ),
    }
}
