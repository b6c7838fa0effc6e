//! Produce: record bytes go to the backend as the client sent them (slices of the request frame).
//! Partitions of one request are written concurrently; acks=0 gets no response at all.

use futures_util::future::join_all;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;

use super::{millis, opt_s};
use crate::backend::{Acks, Backend, ProduceOutcome, RequestContext};
use crate::{BackendError, KafkaError};

/// Handles a Produce request; `Ok(None)` for acks=0 (the writes are still awaited, so a later
/// request on the connection sees them). A failed acks=0 write closes the connection, as Kafka
/// does, because that is the only way the client can learn of it (it then refreshes metadata).
pub(super) async fn handle<B: Backend>(
    backend: &B,
    ctx: &RequestContext,
    req: ProduceRequest,
    version: i16,
) -> Result<Option<ProduceResponse>, KafkaError> {
    let acks = match req.acks {
        0 => Some(Acks::None),
        1 => Some(Acks::Leader),
        -1 => Some(Acks::All),
        _ => None,
    };
    let timeout = millis(req.timeout_ms);
    let transactional = req.transactional_id.is_some();
    let mut topics = Vec::with_capacity(req.topic_data.len());
    for t in req.topic_data {
        let name = t.name.0.to_string();
        let writes = t.partition_data.into_iter().map(|p| {
            let name = name.clone();
            async move {
                let result = match (acks, p.records, transactional) {
                    (_, _, true) => Err(BackendError::TransactionsUnsupported),
                    (None, _, _) => Err(BackendError::InvalidRequest(
                        "acks must be 0, 1 or -1".into(),
                    )),
                    (Some(_), None, _) => Err(BackendError::CorruptMessage),
                    (Some(acks), Some(records), false) => {
                        backend
                            .produce(ctx, name, p.index, records, acks, timeout)
                            .await
                    }
                };
                (p.index, result)
            }
        });
        topics.push((t.name, join_all(writes).await));
    }
    if acks == Some(Acks::None) {
        return match first_failure(&topics) {
            Some(error) => Err(KafkaError::UnackedProduceFailed { error }),
            None => Ok(None),
        };
    }
    let invalid_acks = acks.is_none();
    let responses = topics
        .into_iter()
        .map(|(name, parts)| {
            let parts = parts
                .into_iter()
                .map(|(index, r)| partition(ctx, index, r, invalid_acks, version));
            TopicProduceResponse::default()
                .with_name(name)
                .with_partition_responses(parts.collect())
        })
        .collect();
    Ok(Some(ProduceResponse::default().with_responses(responses)))
}

fn partition(
    ctx: &RequestContext,
    index: i32,
    result: Result<ProduceOutcome, BackendError>,
    invalid_acks: bool,
    version: i16,
) -> PartitionProduceResponse {
    let out = PartitionProduceResponse::default().with_index(index);
    match result {
        Ok(o) => out
            .with_base_offset(o.base_offset)
            .with_log_append_time_ms(o.log_append_time_ms)
            .with_log_start_offset(o.log_start_offset),
        Err(e) => {
            let code = if invalid_acks {
                ResponseError::InvalidRequiredAcks.code()
            } else {
                super::fail(ctx, "produce", &e)
            };
            let out = out
                .with_error_code(code)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1);
            if version >= 8 {
                out.with_error_message(opt_s(e.message()))
            } else {
                out
            }
        }
    }
}

type PartitionResults = Vec<(i32, Result<ProduceOutcome, BackendError>)>;

fn first_failure<N: std::fmt::Debug>(topics: &[(N, PartitionResults)]) -> Option<String> {
    topics.iter().find_map(|(topic, parts)| {
        parts.iter().find_map(|(partition, result)| {
            let e = result.as_ref().err()?;
            Some(format!("{topic:?} partition {partition}: {e}"))
        })
    })
}
