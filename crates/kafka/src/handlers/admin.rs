//! CreateTopics, DeleteTopics, DescribeConfigs and InitProducerId.

use futures_util::future::join_all;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, InitProducerIdRequest, InitProducerIdResponse,
    ProducerId,
};

use super::{millis, opt_s, s};
use crate::backend::{
    Backend, ConfigEntry, ConfigResource, NewTopic, ProducerIdentity, RequestContext,
};
use crate::BackendError;

/// Kafka's resource type for topics.
const RESOURCE_TOPIC: i8 = 2;
/// Kafka's resource type for brokers.
const RESOURCE_BROKER: i8 = 4;

/// Handles CreateTopics (validate-only included). Manual replica assignment is refused.
pub(super) async fn create_topics<B: Backend>(
    backend: &B,
    ctx: &RequestContext,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let timeout = millis(req.timeout_ms);
    let creates = req.topics.into_iter().map(|t| async move {
        let out = CreatableTopicResult::default().with_name(t.name.clone());
        let topic = NewTopic {
            name: t.name.0.to_string(),
            partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            configs: t
                .configs
                .into_iter()
                .map(|c| (c.name.to_string(), c.value.map(|v| v.to_string())))
                .collect(),
        };
        let result = if t.assignments.is_empty() {
            backend
                .create_topic(ctx, topic, req.validate_only, timeout)
                .await
        } else {
            Err(BackendError::InvalidReplicaAssignment(
                "manual replica assignment is not supported".into(),
            ))
        };
        match result {
            Ok(c) if version >= 5 => out
                .with_num_partitions(c.partitions)
                .with_replication_factor(c.replication_factor)
                .with_configs(Some(c.configs.into_iter().map(created_config).collect())),
            Ok(_) => out,
            Err(e) => out
                .with_error_code(super::fail(ctx, "create topic", &e))
                .with_error_message(opt_s(e.message()).or_else(|| Some(s(e.to_string())))),
        }
    });
    CreateTopicsResponse::default().with_topics(join_all(creates).await)
}

fn created_config(c: ConfigEntry) -> CreatableTopicConfigs {
    CreatableTopicConfigs::default()
        .with_name(s(c.name))
        .with_value(opt_s(c.value))
        .with_read_only(c.read_only)
        .with_config_source(c.source.code())
        .with_is_sensitive(c.sensitive)
}

/// Handles DeleteTopics (by name; topic ids are not supported).
pub(super) async fn delete_topics<B: Backend>(
    backend: &B,
    ctx: &RequestContext,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let timeout = millis(req.timeout_ms);
    let deletes = req.topic_names.into_iter().map(|name| async move {
        let result = backend.delete_topic(ctx, name.0.to_string(), timeout).await;
        let out = DeletableTopicResult::default().with_name(Some(name));
        match result {
            Ok(()) => out,
            Err(e) if version >= 5 => out
                .with_error_code(super::fail(ctx, "delete topic", &e))
                .with_error_message(opt_s(e.message())),
            Err(e) => out.with_error_code(super::fail(ctx, "delete topic", &e)),
        }
    });
    DeleteTopicsResponse::default().with_responses(join_all(deletes).await)
}

/// Handles DescribeConfigs for topics and brokers; other resource types get INVALID_REQUEST.
pub(super) async fn describe_configs<B: Backend>(
    backend: &B,
    ctx: &RequestContext,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let lookups = req.resources.into_iter().map(|r| async move {
        let name = r.resource_name.to_string();
        let resource = match r.resource_type {
            RESOURCE_TOPIC => Ok(ConfigResource::Topic(name)),
            RESOURCE_BROKER => name.parse().map(ConfigResource::Broker).map_err(|_| {
                BackendError::InvalidRequest(format!(
                    "broker resource name {name:?} is not a node id"
                ))
            }),
            other => Err(BackendError::InvalidRequest(format!(
                "resource type {other} is not supported"
            ))),
        };
        let keys = r
            .configuration_keys
            .map(|ks| ks.into_iter().map(|k| k.to_string()).collect());
        let result = match resource {
            Ok(resource) => backend.describe_configs(ctx, resource, keys).await,
            Err(e) => Err(e),
        };
        let out = DescribeConfigsResult::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name);
        match result {
            Ok(entries) => out.with_configs(entries.into_iter().map(described_config).collect()),
            Err(e) => out
                .with_error_code(super::fail(ctx, "describe configs", &e))
                .with_error_message(Some(s(e.to_string()))),
        }
    });
    DescribeConfigsResponse::default().with_results(join_all(lookups).await)
}

fn described_config(c: ConfigEntry) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(s(c.name))
        .with_value(opt_s(c.value))
        .with_read_only(c.read_only)
        .with_config_source(c.source.code())
        .with_is_sensitive(c.sensitive)
}

/// Handles InitProducerId for idempotent producers; a transactional id is refused.
pub(super) async fn init_producer_id<B: Backend>(
    backend: &B,
    ctx: &RequestContext,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let out = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if req.transactional_id.is_some() {
        return out.with_error_code(BackendError::TransactionsUnsupported.code());
    }
    let current = ProducerIdentity {
        producer_id: req.producer_id.0,
        producer_epoch: req.producer_epoch,
    };
    match backend.init_producer_id(ctx, current).await {
        Ok(p) => out
            .with_producer_id(ProducerId(p.producer_id))
            .with_producer_epoch(p.producer_epoch),
        Err(e) => out.with_error_code(super::fail(ctx, "init producer id", &e)),
    }
}
