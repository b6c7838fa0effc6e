//! Fetch: long poll, byte limits and whole batches are the backend's job (see `Backend::fetch`).
//! Fetch sessions (KIP-227) are not kept: every response carries session id 0, which tells the
//! client to send full fetch requests.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use kafka_protocol::ResponseError;

use super::millis;
use crate::backend::{
    Backend, FetchParams, FetchPartitionRequest, FetchedPartition, IsolationLevel, RequestContext,
};
use crate::BackendError;

/// Handles a Fetch request.
pub(super) async fn handle<B: Backend>(
    backend: &B,
    ctx: &RequestContext,
    req: FetchRequest,
    version: i16,
) -> FetchResponse {
    if version >= 7 && req.session_id != 0 {
        let code = ResponseError::FetchSessionIdNotFound.code();
        return FetchResponse::default().with_error_code(code);
    }
    let isolation = isolation(req.isolation_level);
    let shape: Vec<_> = req
        .topics
        .iter()
        .map(|t| (t.topic.clone(), t.partitions.len()))
        .collect();
    let partitions = req
        .topics
        .into_iter()
        .flat_map(|t| {
            let topic = t.topic.0.to_string();
            t.partitions
                .into_iter()
                .map(move |p| FetchPartitionRequest {
                    topic: topic.clone(),
                    partition: p.partition,
                    fetch_offset: p.fetch_offset,
                    current_leader_epoch: p.current_leader_epoch,
                    partition_max_bytes: p.partition_max_bytes,
                })
        })
        .collect::<Vec<_>>();
    let indexes: Vec<i32> = partitions.iter().map(|p| p.partition).collect();
    let params = FetchParams {
        partitions,
        max_wait: millis(req.max_wait_ms),
        min_bytes: req.min_bytes,
        max_bytes: req.max_bytes,
        isolation,
    };
    let mut results = backend.fetch(ctx, params).await.into_iter();
    let mut indexes = indexes.into_iter();
    let mut responses = Vec::with_capacity(shape.len());
    for (topic, count) in shape {
        let parts = (0..count)
            .filter_map(|_| indexes.next())
            .map(|index| {
                let result = results.next().unwrap_or_else(|| {
                    Err(BackendError::Unknown(
                        "backend returned too few fetch results".into(),
                    ))
                });
                partition(ctx, index, result, isolation)
            })
            .collect();
        responses.push(
            FetchableTopicResponse::default()
                .with_topic(topic)
                .with_partitions(parts),
        );
    }
    FetchResponse::default().with_responses(responses)
}

fn isolation(level: i8) -> IsolationLevel {
    match level {
        1 => IsolationLevel::ReadCommitted,
        _ => IsolationLevel::ReadUncommitted,
    }
}

fn partition(
    ctx: &RequestContext,
    index: i32,
    result: Result<FetchedPartition, BackendError>,
    isolation: IsolationLevel,
) -> PartitionData {
    let out = PartitionData::default().with_partition_index(index);
    match result {
        Ok(f) => {
            let aborted = (isolation == IsolationLevel::ReadCommitted).then(Vec::new);
            out.with_high_watermark(f.high_watermark)
                .with_last_stable_offset(f.last_stable_offset)
                .with_log_start_offset(f.log_start_offset)
                .with_aborted_transactions(aborted)
                .with_records(Some(concat(f.records)))
        }
        Err(e) => out
            .with_error_code(super::fail(ctx, "fetch", &e))
            .with_high_watermark(-1)
            .with_last_stable_offset(-1)
            .with_log_start_offset(-1)
            .with_records(Some(Bytes::new())),
    }
}

/// One chunk is passed as is; several are joined (the response encoder copies them anyway).
fn concat(chunks: Vec<Bytes>) -> Bytes {
    match <[Bytes; 1]>::try_from(chunks) {
        Ok([one]) => one,
        Err(chunks) => {
            let mut out = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
            chunks.iter().for_each(|c| out.extend_from_slice(c));
            out.freeze()
        }
    }
}
