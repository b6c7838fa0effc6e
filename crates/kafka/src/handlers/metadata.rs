//! Metadata: brokers with their advertised Kafka addresses, controller, topics and partitions.
//! Topics are never auto-created; with no topic list all topics are returned, internal ones
//! (`__consumer_offsets`) marked `is_internal` as Kafka does.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::ResponseError;

use super::{opt_s, s};
use crate::backend::{Backend, BrokerInfo, PartitionMetadata, RequestContext, TopicMetadata};
use crate::error::code_of;

/// Handles a Metadata request.
pub(super) async fn handle<B: Backend>(
    backend: &B,
    ctx: &RequestContext,
    req: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let all = req
        .topics
        .as_ref()
        .is_none_or(|t| version == 0 && t.is_empty());
    let mut by_id = Vec::new();
    let names = (!all).then(|| {
        let topics = req.topics.unwrap_or_default();
        let (named, unnamed): (Vec<_>, Vec<_>) = topics.into_iter().partition(|t| t.name.is_some());
        by_id = unnamed;
        named
            .into_iter()
            .filter_map(|t| t.name.map(|n| n.0.to_string()))
            .collect::<Vec<_>>()
    });
    let mut resp = MetadataResponse::default();
    match backend.metadata(ctx, names.clone()).await {
        Ok(md) => {
            resp.brokers = md.brokers.into_iter().map(|b| broker(b, version)).collect();
            if version >= 2 {
                resp.cluster_id = opt_s(md.cluster_id);
            }
            if version >= 1 {
                resp.controller_id = BrokerId(md.controller_id);
            }
            resp.topics = md.topics.into_iter().map(|t| topic(t, version)).collect();
        }
        Err(e) => {
            let code = super::fail(ctx, "metadata", &e);
            let failed = |n: String| {
                MetadataResponseTopic::default()
                    .with_error_code(code)
                    .with_name(Some(TopicName(s(n))))
            };
            resp.topics = names.unwrap_or_default().into_iter().map(failed).collect();
        }
    }
    // Lookups by topic id (v12+): Skein has no topic ids.
    for t in by_id {
        let unknown = ResponseError::UnknownTopicId.code();
        resp.topics.push(
            MetadataResponseTopic::default()
                .with_error_code(unknown)
                .with_topic_id(t.topic_id),
        );
    }
    resp
}

fn broker(b: BrokerInfo, version: i16) -> MetadataResponseBroker {
    let out = MetadataResponseBroker::default()
        .with_node_id(BrokerId(b.node_id))
        .with_host(s(b.host))
        .with_port(b.port);
    if version >= 1 {
        out.with_rack(opt_s(b.rack))
    } else {
        out
    }
}

fn topic(t: TopicMetadata, version: i16) -> MetadataResponseTopic {
    let code = t.error.as_ref().map_or(0, |e| e.code());
    MetadataResponseTopic::default()
        .with_error_code(code)
        .with_name(Some(TopicName(s(t.name))))
        .with_is_internal(version >= 1 && t.is_internal)
        .with_partitions(
            t.partitions
                .into_iter()
                .map(|p| partition(p, version))
                .collect(),
        )
}

fn partition(p: PartitionMetadata, version: i16) -> MetadataResponsePartition {
    let ids = |v: Vec<i32>| v.into_iter().map(BrokerId).collect::<Vec<_>>();
    let mut out = MetadataResponsePartition::default()
        .with_error_code(code_of(&p.error.map_or(Ok(()), Err)))
        .with_partition_index(p.partition)
        .with_leader_id(BrokerId(p.leader))
        .with_replica_nodes(ids(p.replicas))
        .with_isr_nodes(ids(p.isr));
    if version >= 7 {
        out.leader_epoch = p.leader_epoch;
    }
    if version >= 5 {
        out.offline_replicas = ids(p.offline_replicas);
    }
    out
}
