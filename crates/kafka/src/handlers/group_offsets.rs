//! OffsetCommit and OffsetFetch: group offsets kept in Skein's `__consumer_offsets`.

use std::collections::BTreeMap;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
    TopicName,
};

use super::s;
use crate::backend::{Backend, CommitOffset, CommittedOffset, OffsetCommit, RequestContext};
use crate::BackendError;

/// Handles OffsetCommit; a group-level error is reported on every partition, as Kafka does.
pub(super) async fn commit<B: Backend>(
    backend: &B,
    ctx: &RequestContext,
    req: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let shape: Vec<_> = req
        .topics
        .iter()
        .map(|t| (t.name.clone(), t.partitions.len()))
        .collect();
    let offsets: Vec<CommitOffset> = req
        .topics
        .into_iter()
        .flat_map(|t| {
            let topic = t.name.0.to_string();
            t.partitions.into_iter().map(move |p| CommitOffset {
                topic: topic.clone(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: p.committed_metadata.map(|m| m.to_string()),
            })
        })
        .collect();
    let indexes: Vec<i32> = offsets.iter().map(|o| o.partition).collect();
    let commit = OffsetCommit {
        group_id: req.group_id.0.to_string(),
        generation_id: req.generation_id_or_member_epoch,
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.map(|i| i.to_string()),
        offsets,
    };
    let codes: Vec<i16> = match backend.offset_commit(ctx, commit).await {
        Ok(results) => results
            .iter()
            .map(|r| {
                r.as_ref()
                    .err()
                    .map_or(0, |e| super::fail(ctx, "commit", e))
            })
            .collect(),
        Err(e) => vec![super::fail(ctx, "offset commit", &e); indexes.len()],
    };
    let mut flat = indexes
        .into_iter()
        .zip(codes.into_iter().chain(std::iter::repeat(-1)));
    let topics = shape
        .into_iter()
        .map(|(name, count)| {
            let parts = flat.by_ref().take(count).map(|(index, code)| {
                OffsetCommitResponsePartition::default()
                    .with_partition_index(index)
                    .with_error_code(code)
            });
            OffsetCommitResponseTopic::default()
                .with_name(name)
                .with_partitions(parts.collect())
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// Handles OffsetFetch (v1..=7 one group, v8 a batch of groups).
/// (topic, partition) pairs from a request's topics and their partition indexes.
fn partitions<N: ToString>(topics: impl Iterator<Item = (N, Vec<i32>)>) -> Vec<(String, i32)> {
    topics
        .flat_map(|(name, indexes)| {
            let name = name.to_string();
            indexes.into_iter().map(move |p| (name.clone(), p))
        })
        .collect()
}

pub(super) async fn fetch<B: Backend>(
    backend: &B,
    ctx: &RequestContext,
    req: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    if version >= 8 {
        let mut groups = Vec::with_capacity(req.groups.len());
        for g in req.groups {
            let wanted = g
                .topics
                .map(|ts| partitions(ts.into_iter().map(|t| (t.name.0, t.partition_indexes))));
            let result = backend
                .offset_fetch(ctx, g.group_id.0.to_string(), wanted, req.require_stable)
                .await;
            groups.push(group_v8(ctx, g.group_id, result));
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted = req
        .topics
        .map(|ts| partitions(ts.into_iter().map(|t| (t.name.0, t.partition_indexes))));
    let result = backend
        .offset_fetch(ctx, req.group_id.0.to_string(), wanted, req.require_stable)
        .await;
    match result {
        Ok(offsets) => OffsetFetchResponse::default()
            .with_topics(by_topic(offsets, |o| partition_v7(o, version))),
        Err(e) if version >= 2 => {
            OffsetFetchResponse::default().with_error_code(super::fail(ctx, "offset fetch", &e))
        }
        Err(e) => {
            tracing::debug!(peer = %ctx.peer, error = %e, "offset fetch failed");
            OffsetFetchResponse::default()
        }
    }
}

fn error_code(e: &Option<BackendError>) -> i16 {
    e.as_ref().map_or(0, BackendError::code)
}

fn partition_v7(o: CommittedOffset, version: i16) -> OffsetFetchResponsePartition {
    let out = OffsetFetchResponsePartition::default()
        .with_partition_index(o.partition)
        .with_committed_offset(o.offset)
        .with_metadata(Some(s(o.metadata.unwrap_or_default())))
        .with_error_code(error_code(&o.error));
    if version >= 5 {
        out.with_committed_leader_epoch(o.leader_epoch)
    } else {
        out
    }
}

fn group_v8(
    ctx: &RequestContext,
    group_id: GroupId,
    result: Result<Vec<CommittedOffset>, BackendError>,
) -> OffsetFetchResponseGroup {
    let out = OffsetFetchResponseGroup::default().with_group_id(group_id);
    match result {
        Ok(offsets) => {
            let topics = by_topic::<_, Grouped<_>>(offsets, |o| {
                OffsetFetchResponsePartitions::default()
                    .with_partition_index(o.partition)
                    .with_committed_offset(o.offset)
                    .with_committed_leader_epoch(o.leader_epoch)
                    .with_metadata(Some(s(o.metadata.unwrap_or_default())))
                    .with_error_code(error_code(&o.error))
            });
            let topics = topics
                .into_iter()
                .map(|t| {
                    OffsetFetchResponseTopics::default()
                        .with_name(t.name)
                        .with_partitions(t.partitions)
                })
                .collect();
            out.with_topics(topics)
        }
        Err(e) => out.with_error_code(super::fail(ctx, "offset fetch", &e)),
    }
}

/// A topic with its partitions, before it becomes the version's response type.
struct Grouped<P> {
    name: TopicName,
    partitions: Vec<P>,
}

fn by_topic<P, T: From<Grouped<P>>>(
    offsets: Vec<CommittedOffset>,
    part: impl Fn(CommittedOffset) -> P,
) -> Vec<T> {
    let mut order: Vec<String> = Vec::new();
    let mut topics: BTreeMap<String, Vec<P>> = BTreeMap::new();
    for o in offsets {
        if !topics.contains_key(&o.topic) {
            order.push(o.topic.clone());
        }
        topics.entry(o.topic.clone()).or_default().push(part(o));
    }
    order
        .into_iter()
        .filter_map(|name| {
            let partitions = topics.remove(&name)?;
            Some(T::from(Grouped {
                name: TopicName(s(name)),
                partitions,
            }))
        })
        .collect()
}

impl From<Grouped<OffsetFetchResponsePartition>> for OffsetFetchResponseTopic {
    fn from(g: Grouped<OffsetFetchResponsePartition>) -> Self {
        Self::default()
            .with_name(g.name)
            .with_partitions(g.partitions)
    }
}
