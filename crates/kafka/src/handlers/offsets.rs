//! ListOffsets (earliest, latest, by timestamp) and OffsetForLeaderEpoch.

use futures_util::future::join_all;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    ListOffsetsRequest, ListOffsetsResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
};

use crate::backend::{Backend, IsolationLevel, OffsetSpec, RequestContext};
use crate::BackendError;

/// Kafka's ListOffsets timestamp for "latest".
const LATEST: i64 = -1;
/// Kafka's ListOffsets timestamp for "earliest".
const EARLIEST: i64 = -2;

fn spec(timestamp: i64) -> Result<OffsetSpec, BackendError> {
    match timestamp {
        LATEST => Ok(OffsetSpec::Latest),
        EARLIEST => Ok(OffsetSpec::Earliest),
        t if t >= 0 => Ok(OffsetSpec::Timestamp(t)),
        t => Err(BackendError::InvalidRequest(format!(
            "unsupported ListOffsets timestamp {t}"
        ))),
    }
}

/// Handles a ListOffsets request (v1+: one offset per partition).
pub(super) async fn list_offsets<B: Backend>(
    backend: &B,
    ctx: &RequestContext,
    req: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let isolation = match req.isolation_level {
        1 => IsolationLevel::ReadCommitted,
        _ => IsolationLevel::ReadUncommitted,
    };
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let lookups = t.partitions.into_iter().map(|p| {
            let name = name.clone();
            async move {
                let out =
                    ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
                let result = match spec(p.timestamp) {
                    Ok(spec) => {
                        backend
                            .list_offsets(ctx, name, p.partition_index, spec, isolation)
                            .await
                    }
                    Err(e) => Err(e),
                };
                match result {
                    Ok(o) if ctx.api_version >= 4 => out
                        .with_offset(o.offset)
                        .with_timestamp(o.timestamp)
                        .with_leader_epoch(o.leader_epoch),
                    Ok(o) => out.with_offset(o.offset).with_timestamp(o.timestamp),
                    Err(e) => out
                        .with_error_code(super::fail(ctx, "list offsets", &e))
                        .with_offset(-1)
                        .with_timestamp(-1),
                }
            }
        });
        let partitions = join_all(lookups).await;
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// Handles an OffsetForLeaderEpoch request (consumers use it to detect log truncation).
pub(super) async fn for_leader_epoch<B: Backend>(
    backend: &B,
    ctx: &RequestContext,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.topic.0.to_string();
        let lookups = t.partitions.into_iter().map(|p| {
            let name = name.clone();
            async move {
                let out = EpochEndOffset::default().with_partition(p.partition);
                let epoch = p.leader_epoch;
                match backend
                    .offset_for_leader_epoch(ctx, name, p.partition, p.current_leader_epoch, epoch)
                    .await
                {
                    Ok(e) => out
                        .with_leader_epoch(e.leader_epoch)
                        .with_end_offset(e.end_offset),
                    Err(e) => out.with_error_code(super::fail(ctx, "offset for leader epoch", &e)),
                }
            }
        });
        let partitions = join_all(lookups).await;
        topics.push(
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions),
        );
    }
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
