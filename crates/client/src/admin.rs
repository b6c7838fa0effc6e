//! Cluster administration: topics, cluster description, offsets.

use std::collections::{BTreeMap, HashMap};

use skein_proto::v1 as pb;
use skein_proto::v1::fetch_service_client::FetchServiceClient;
use skein_proto::v1::metadata_service_client::MetadataServiceClient;

use crate::cluster::{
    convert_node, convert_topic, timed, Client, ClusterMetadata, NodeDescription, TopicDescription,
};
use crate::error::{ClientError, Result};
use crate::record::TopicPartition;

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewTopic {
    /// Name: 1-249 characters of `[A-Za-z0-9._-]`, not `.` or `..`.
    pub name: String,
    /// Partitions; `None` takes the cluster default.
    pub partitions: Option<u32>,
    /// Replication factor; `None` takes the cluster default (`min(3, nodes)`).
    pub replication_factor: Option<u32>,
    /// Per-topic settings (`retention.ms`, `retention.bytes`, `segment.bytes`, `segment.ms`,
    /// `flush.policy`, `flush.interval.ms`, `max.batch.bytes`).
    pub config: BTreeMap<String, String>,
}

impl NewTopic {
    /// A topic with the cluster's default partitions and replication.
    pub fn new(name: impl Into<String>) -> Self {
        NewTopic {
            name: name.into(),
            ..NewTopic::default()
        }
    }

    /// Sets the partition count.
    pub fn partitions(mut self, n: u32) -> Self {
        self.partitions = Some(n);
        self
    }

    /// Sets the replication factor.
    pub fn replication_factor(mut self, n: u32) -> Self {
        self.replication_factor = Some(n);
        self
    }

    /// Adds a per-topic setting.
    pub fn config(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.insert(key.into(), value.into());
        self
    }
}

/// The cluster's nodes as the answering node sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    /// Cluster id.
    pub cluster_id: String,
    /// Leader of the metadata group, if any.
    pub controller_id: Option<u64>,
    /// The node that answered.
    pub answered_by: u64,
    /// Nodes, sorted by id.
    pub nodes: Vec<NodeDescription>,
}

/// Which offset of a partition to look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark (the offset the next record will get).
    Latest,
    /// The first offset whose record timestamp is at or after this (ms since the epoch); the
    /// high watermark when there is none.
    Timestamp(i64),
}

/// The answer to an offset lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// The partition.
    pub tp: TopicPartition,
    /// The offset asked for.
    pub offset: u64,
    /// First offset still in the log.
    pub log_start_offset: u64,
    /// Committed end of the log.
    pub high_watermark: u64,
}

/// Topic and cluster administration. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Admin {
    client: Client,
}

impl Admin {
    /// An admin API on `client`.
    pub fn new(client: Client) -> Self {
        Admin { client }
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates a topic and returns its description.
    pub async fn create_topic(&self, topic: NewTopic) -> Result<TopicDescription> {
        let request = pb::CreateTopicRequest {
            name: topic.name.clone(),
            partitions: topic.partitions.unwrap_or(0),
            replication_factor: topic.replication_factor.unwrap_or(0),
            config: topic.config.clone().into_iter().collect(),
        };
        let what = format!("create topic {}", topic.name);
        let timeout = self.client.config().request_timeout;
        let mut attempt = 0u32;
        let result = self
            .client
            .retry(None, || {
                attempt += 1;
                let request = request.clone();
                let what = what.clone();
                let first = attempt == 1;
                let name = topic.name.clone();
                async move {
                    let r = self
                        .client
                        .call_any(&what, |channel, addr| {
                            let request = request.clone();
                            let what = what.clone();
                            async move {
                                let mut c = MetadataServiceClient::new(channel);
                                timed(&what, &addr, timeout, c.create_topic(request)).await
                            }
                        })
                        .await;
                    match r {
                        // An earlier attempt that timed out may have created it.
                        Err(ClientError::TopicAlreadyExists { .. }) if !first => Ok(None),
                        Err(ClientError::TopicAlreadyExists { .. }) => {
                            Err(ClientError::TopicAlreadyExists { topic: name })
                        }
                        Err(e) => Err(e),
                        Ok(r) => Ok(r.topic),
                    }
                }
            })
            .await?;
        match result {
            Some(t) if t.error.is_none() => Ok(convert_topic(t)),
            Some(t) => Err(ClientError::from_partition_error(&what, t.error.as_ref())
                .unwrap_or_else(|| ClientError::CorruptResponse {
                    what,
                    reason: "error without a code".into(),
                })),
            None => self.describe_topic(&topic.name).await,
        }
    }

    /// Deletes a topic and its data on every node.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let what = format!("delete topic {name}");
        let timeout = self.client.config().request_timeout;
        let request = pb::DeleteTopicRequest { name: name.into() };
        self.client
            .retry(None, || {
                self.client.call_any(&what, |channel, addr| {
                    let request = request.clone();
                    let what = what.clone();
                    async move {
                        let mut c = MetadataServiceClient::new(channel);
                        timed(&what, &addr, timeout, c.delete_topic(request)).await
                    }
                })
            })
            .await
            .map_err(|e| name_unknown_topic(e, name))?;
        Ok(())
    }

    /// Sets configuration overrides of an existing topic (`retention.ms`, `retention.bytes`,
    /// ...; keys not named keep their values) and returns the topic as changed. Retention
    /// changes take effect at each replica's next retention check.
    pub async fn alter_topic_config(
        &self,
        name: &str,
        config: BTreeMap<String, String>,
    ) -> Result<TopicDescription> {
        let what = format!("alter config of topic {name}");
        let timeout = self.client.config().request_timeout;
        let request = pb::AlterTopicConfigRequest {
            name: name.into(),
            config: config.into_iter().collect(),
        };
        let r = self
            .client
            .retry(None, || {
                self.client.call_any(&what, |channel, addr| {
                    let request = request.clone();
                    let what = what.clone();
                    async move {
                        let mut c = MetadataServiceClient::new(channel);
                        timed(&what, &addr, timeout, c.alter_topic_config(request)).await
                    }
                })
            })
            .await
            .map_err(|e| name_unknown_topic(e, name))?;
        match r.topic {
            Some(t) => Ok(convert_topic(t)),
            None => self.describe_topic(name).await,
        }
    }

    /// Describes one topic: partitions, leaders, replicas, config.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        let topics = [name.to_string()];
        let meta = self
            .client
            .retry(None, || self.client.metadata(&topics))
            .await?;
        meta.topics
            .into_iter()
            .find(|t| t.name == name)
            .ok_or_else(|| ClientError::UnknownTopicOrPartition {
                what: format!("topic {name}"),
            })
    }

    /// All topics, sorted by name.
    pub async fn list_topics(&self) -> Result<Vec<TopicDescription>> {
        Ok(self.metadata().await?.topics)
    }

    /// Nodes, topics and leaders in one answer.
    pub async fn metadata(&self) -> Result<ClusterMetadata> {
        self.client.retry(None, || self.client.metadata(&[])).await
    }

    /// The cluster's nodes and their health, and the metadata leader.
    pub async fn describe_cluster(&self) -> Result<ClusterDescription> {
        let timeout = self.client.config().request_timeout;
        let r = self
            .client
            .retry(None, || {
                self.client
                    .call_any("describe cluster", |channel, addr| async move {
                        let mut c = MetadataServiceClient::new(channel);
                        timed(
                            "describe cluster",
                            &addr,
                            timeout,
                            c.describe_cluster(pb::DescribeClusterRequest {}),
                        )
                        .await
                    })
            })
            .await?;
        let mut nodes: Vec<NodeDescription> = r.nodes.into_iter().map(convert_node).collect();
        nodes.sort_by_key(|n| n.node_id);
        Ok(ClusterDescription {
            cluster_id: r.cluster_id,
            controller_id: (r.controller_id != 0).then_some(r.controller_id),
            answered_by: r.answered_by,
            nodes,
        })
    }

    /// Looks up offsets (earliest, latest, by timestamp) of partitions, asking each partition's
    /// leader. The answer is in the order of `queries`.
    pub async fn list_offsets(
        &self,
        queries: &[(TopicPartition, OffsetSpec)],
    ) -> Result<Vec<PartitionOffsets>> {
        list_offsets(&self.client, queries).await
    }
}

/// [`Admin::list_offsets`], shared with the consumer.
pub(crate) async fn list_offsets(
    client: &Client,
    queries: &[(TopicPartition, OffsetSpec)],
) -> Result<Vec<PartitionOffsets>> {
    let mut answers: HashMap<TopicPartition, PartitionOffsets> = HashMap::new();
    let mut pending: Vec<(TopicPartition, OffsetSpec)> = queries.to_vec();
    let timeout = client.config().request_timeout;
    let mut attempt = 0u32;
    loop {
        let mut by_leader: HashMap<String, Vec<(TopicPartition, OffsetSpec)>> = HashMap::new();
        let mut last_error: Option<ClientError> = None;
        let mut retry_now = false;
        let mut failed: Vec<(TopicPartition, OffsetSpec)> = Vec::new();
        for (tp, spec) in pending.drain(..) {
            match client.leader(&tp).await {
                Ok((_, addr)) => by_leader.entry(addr).or_default().push((tp, spec)),
                Err(e) if e.is_retryable() => {
                    client.on_error(Some(&tp), &e);
                    last_error = Some(e);
                    failed.push((tp, spec));
                }
                Err(e) => return Err(e),
            }
        }
        let calls = by_leader.into_iter().map(|(addr, group)| async move {
            let request = pb::ListOffsetsRequest {
                partitions: group
                    .iter()
                    .map(|(tp, spec)| pb::PartitionOffsetQuery {
                        topic: tp.topic.clone(),
                        partition: tp.partition,
                        spec: match spec {
                            OffsetSpec::Earliest => pb::OffsetSpec::Earliest as i32,
                            OffsetSpec::Latest => pb::OffsetSpec::Latest as i32,
                            OffsetSpec::Timestamp(_) => pb::OffsetSpec::Timestamp as i32,
                        },
                        timestamp_ms: match spec {
                            OffsetSpec::Timestamp(ts) => *ts,
                            _ => 0,
                        },
                    })
                    .collect(),
            };
            let result = match client.channel(&addr) {
                Ok(channel) => {
                    let mut c = FetchServiceClient::new(channel);
                    timed("list offsets", &addr, timeout, c.list_offsets(request)).await
                }
                Err(e) => Err(e),
            };
            (group, result)
        });
        for (group, result) in futures_util::future::join_all(calls).await {
            match result {
                Err(e) if e.is_retryable() => {
                    for (tp, spec) in group {
                        client.on_error(Some(&tp), &e);
                        failed.push((tp, spec));
                    }
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
                Ok(response) => {
                    let mut by_tp: HashMap<(String, u32), pb::PartitionOffsetResult> = response
                        .partitions
                        .into_iter()
                        .map(|r| ((r.topic.clone(), r.partition), r))
                        .collect();
                    for (tp, spec) in group {
                        let what = format!("list offsets of {tp}");
                        let Some(r) = by_tp.remove(&(tp.topic.clone(), tp.partition)) else {
                            return Err(ClientError::CorruptResponse {
                                what,
                                reason: "no result for the partition".into(),
                            });
                        };
                        match ClientError::from_partition_error(&what, r.error.as_ref()) {
                            None => {
                                answers.insert(
                                    tp.clone(),
                                    PartitionOffsets {
                                        tp,
                                        offset: r.offset,
                                        log_start_offset: r.log_start_offset,
                                        high_watermark: r.high_watermark,
                                    },
                                );
                            }
                            Some(e) if e.is_retryable() => {
                                client.on_error(Some(&tp), &e);
                                retry_now |= matches!(
                                    &e,
                                    ClientError::NotLeader {
                                        leader: Some(_),
                                        ..
                                    }
                                );
                                last_error = Some(e);
                                failed.push((tp, spec));
                            }
                            Some(e) => return Err(e),
                        }
                    }
                }
            }
        }
        if failed.is_empty() {
            break;
        }
        if attempt >= client.config().max_retries {
            return Err(
                last_error.unwrap_or_else(|| ClientError::LeaderNotAvailable {
                    what: "list offsets".into(),
                }),
            );
        }
        if !(retry_now && attempt == 0) {
            tokio::time::sleep(client.backoff(attempt)).await;
        }
        attempt += 1;
        pending = failed;
    }
    queries
        .iter()
        .map(|(tp, _)| {
            answers
                .get(tp)
                .cloned()
                .ok_or_else(|| ClientError::CorruptResponse {
                    what: format!("list offsets of {tp}"),
                    reason: "no answer".into(),
                })
        })
        .collect()
}

/// An unknown-topic error from a call about topic `name`, named after the topic rather than the
/// broker's wording.
fn name_unknown_topic(e: ClientError, name: &str) -> ClientError {
    match e {
        ClientError::UnknownTopicOrPartition { .. } => ClientError::UnknownTopicOrPartition {
            what: format!("topic {name}"),
        },
        e => e,
    }
}
