//! The client gRPC services (metadata and topic administration, produce, fetch, list offsets):
//! translation between protobuf and the broker core ([`crate::core`]), nothing more.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use futures_util::Stream;
use skein_proto::v1 as pb;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use crate::broker::Broker;
use crate::core::{
    BrokerCore, ClusterView, FetchPart, FetchSpec, OffsetQuery, TopicSpec, TopicView,
};
use crate::error::{NodeError, Result};

pub use crate::core::PARTITIONS_MAX;

/// The client API of a node.
#[derive(Debug, Clone)]
pub struct ClientApi {
    core: BrokerCore,
}

fn topic_pb(t: TopicView) -> pb::TopicInfo {
    pb::TopicInfo {
        name: t.name,
        partitions: t
            .partitions
            .into_iter()
            .map(|p| pb::PartitionInfo {
                partition: p.partition,
                replicas: p.replicas,
                leader: p.leader,
                leader_term: p.leader_term,
                in_sync: p.in_sync,
            })
            .collect(),
        replication_factor: t.replication_factor,
        config: t.configs.into_iter().collect(),
        error: None,
    }
}

fn nodes_pb(c: &ClusterView) -> Vec<pb::NodeInfo> {
    c.nodes
        .iter()
        .map(|n| pb::NodeInfo {
            node_id: n.id,
            client_addr: n.client_addr.clone(),
            peer_addr: n.peer_addr.clone(),
            ready: n.ready,
        })
        .collect()
}

impl ClientApi {
    /// Serves the client API of `broker`.
    pub fn new(broker: Arc<Broker>) -> Self {
        ClientApi {
            core: BrokerCore::new(broker),
        }
    }

    fn topic_info(&self, name: &str) -> pb::TopicInfo {
        match self.core.topic(name) {
            Ok(t) => topic_pb(t),
            Err(e) => pb::TopicInfo {
                name: name.to_owned(),
                error: Some(e.to_proto()),
                ..Default::default()
            },
        }
    }

    async fn fetch_inner(&self, req: &pb::FetchRequest) -> Result<pb::FetchResponse> {
        let spec = FetchSpec {
            partitions: req
                .partitions
                .iter()
                .map(|p| FetchPart {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    offset: p.offset,
                    max_bytes: p.max_bytes,
                })
                .collect(),
            max_bytes: req.max_bytes,
            max_wait: Duration::from_millis(u64::from(req.max_wait_ms)),
            min_bytes: req.min_bytes,
        };
        let results = self.core.fetch(&spec).await?;
        let partitions = req
            .partitions
            .iter()
            .zip(results)
            .map(|(p, r)| match r {
                Ok(f) => pb::PartitionFetchResult {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    error: None,
                    high_watermark: f.high_watermark,
                    log_start_offset: f.log_start_offset,
                    next_offset: f.next_offset,
                    records: f.records,
                },
                Err(e) => pb::PartitionFetchResult {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    error: Some(e.to_proto()),
                    next_offset: p.offset,
                    ..Default::default()
                },
            })
            .collect();
        Ok(pb::FetchResponse { partitions })
    }

    async fn list_offset(&self, q: &pb::PartitionOffsetQuery) -> Result<pb::PartitionOffsetResult> {
        let spec = pb::OffsetSpec::try_from(q.spec)
            .map_err(|_| NodeError::InvalidRequest(format!("unknown offset spec {}", q.spec)))?;
        let query = match spec {
            pb::OffsetSpec::Earliest => OffsetQuery::Earliest,
            pb::OffsetSpec::Latest => OffsetQuery::Latest,
            pb::OffsetSpec::Timestamp => OffsetQuery::Timestamp(q.timestamp_ms),
        };
        let a = self.core.list_offset(&q.topic, q.partition, query).await?;
        Ok(pb::PartitionOffsetResult {
            topic: q.topic.clone(),
            partition: q.partition,
            error: None,
            // No record at or after the time: the end of the log.
            offset: a.offset.unwrap_or(a.high_watermark),
            log_start_offset: a.log_start_offset,
            high_watermark: a.high_watermark,
        })
    }
}

#[tonic::async_trait]
impl pb::metadata_service_server::MetadataService for ClientApi {
    async fn metadata(
        &self,
        req: Request<pb::MetadataRequest>,
    ) -> Result<Response<pb::MetadataResponse>, Status> {
        let req = req.into_inner();
        let names = if req.topics.is_empty() {
            self.core.topic_names()
        } else {
            req.topics
        };
        let cluster = self.core.cluster();
        Ok(Response::new(pb::MetadataResponse {
            nodes: nodes_pb(&cluster),
            topics: names.iter().map(|n| self.topic_info(n)).collect(),
            controller_id: cluster.controller_id,
            cluster_id: cluster.cluster_id,
            request_bytes_max: self.core.request_bytes_max() as u64,
        }))
    }

    async fn create_topic(
        &self,
        req: Request<pb::CreateTopicRequest>,
    ) -> Result<Response<pb::CreateTopicResponse>, Status> {
        let req = req.into_inner();
        let spec = TopicSpec {
            name: req.name,
            partitions: (req.partitions != 0).then_some(req.partitions),
            replication_factor: (req.replication_factor != 0).then_some(req.replication_factor),
            configs: req.config.into_iter().collect(),
        };
        let topic = self.core.create_topic(spec, false).await?;
        Ok(Response::new(pb::CreateTopicResponse {
            topic: Some(topic_pb(topic)),
        }))
    }

    async fn alter_topic_config(
        &self,
        req: Request<pb::AlterTopicConfigRequest>,
    ) -> Result<Response<pb::AlterTopicConfigResponse>, Status> {
        let req = req.into_inner();
        let topic = self
            .core
            .alter_topic_config(&req.name, req.config.into_iter().collect())
            .await?;
        Ok(Response::new(pb::AlterTopicConfigResponse {
            topic: Some(topic_pb(topic)),
        }))
    }

    async fn delete_topic(
        &self,
        req: Request<pb::DeleteTopicRequest>,
    ) -> Result<Response<pb::DeleteTopicResponse>, Status> {
        self.core.delete_topic(&req.into_inner().name).await?;
        Ok(Response::new(pb::DeleteTopicResponse {}))
    }

    async fn describe_cluster(
        &self,
        _req: Request<pb::DescribeClusterRequest>,
    ) -> Result<Response<pb::DescribeClusterResponse>, Status> {
        let cluster = self.core.cluster();
        let broker = self.core.broker();
        let statuses = join_all(cluster.nodes.iter().map(|n| broker.node_status(n.id))).await;
        let mut nodes = nodes_pb(&cluster);
        for (n, st) in nodes.iter_mut().zip(statuses) {
            n.ready = st.is_some_and(|s| s.ready);
        }
        Ok(Response::new(pb::DescribeClusterResponse {
            nodes,
            controller_id: cluster.controller_id,
            cluster_id: cluster.cluster_id,
            answered_by: self.core.node_id(),
        }))
    }
}

#[tonic::async_trait]
impl pb::produce_service_server::ProduceService for ClientApi {
    async fn produce(
        &self,
        req: Request<pb::ProduceRequest>,
    ) -> Result<Response<pb::ProduceResponse>, Status> {
        let req = req.into_inner();
        let timeout = self.core.produce_timeout(
            (req.timeout_ms != 0).then(|| Duration::from_millis(u64::from(req.timeout_ms))),
        );
        let keys: Vec<(String, u32)> = req
            .partitions
            .iter()
            .map(|p| (p.topic.clone(), p.partition))
            .collect();
        let writes = req
            .partitions
            .into_iter()
            .map(|p| (p.topic, p.partition, p.batches))
            .collect();
        let results = self.core.produce(writes, timeout).await?;
        let partitions = keys
            .into_iter()
            .zip(results)
            .map(|((topic, partition), r)| pb::PartitionProduceResult {
                topic,
                partition,
                base_offsets: r.base_offsets,
                error: r.error.map(|e| e.to_proto()),
            })
            .collect();
        Ok(Response::new(pb::ProduceResponse { partitions }))
    }

    async fn init_producer_id(
        &self,
        _req: Request<pb::InitProducerIdRequest>,
    ) -> Result<Response<pb::InitProducerIdResponse>, Status> {
        let producer_id = self.core.init_producer_id().await?;
        Ok(Response::new(pb::InitProducerIdResponse {
            producer_id,
            producer_epoch: 0,
        }))
    }
}

type FetchStream = Pin<Box<dyn Stream<Item = Result<pb::FetchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::fetch_service_server::FetchService for ClientApi {
    async fn fetch(
        &self,
        req: Request<pb::FetchRequest>,
    ) -> Result<Response<pb::FetchResponse>, Status> {
        Ok(Response::new(self.fetch_inner(&req.into_inner()).await?))
    }

    type FetchStreamStream = FetchStream;

    async fn fetch_stream(
        &self,
        req: Request<pb::FetchRequest>,
    ) -> Result<Response<Self::FetchStreamStream>, Status> {
        self.core.check_ready()?;
        let mut req = req.into_inner();
        if req.max_wait_ms == 0 {
            req.max_wait_ms = 500;
        }
        let (tx, rx) = mpsc::channel::<Result<pb::FetchResponse, Status>>(4);
        let api = self.clone();
        tokio::spawn(async move {
            loop {
                let resp = match api.fetch_inner(&req).await {
                    Ok(resp) => resp,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
                // Advance each partition past what was sent.
                let mut any = false;
                for (p, r) in req.partitions.iter_mut().zip(&resp.partitions) {
                    if r.error.is_none() && r.next_offset > p.offset {
                        p.offset = r.next_offset;
                    }
                    any |= !r.records.is_empty() || r.error.is_some();
                }
                if any && tx.send(Ok(resp)).await.is_err() {
                    return;
                }
                if tx.is_closed() || api.core.check_ready().is_err() {
                    return;
                }
            }
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_offsets(
        &self,
        req: Request<pb::ListOffsetsRequest>,
    ) -> Result<Response<pb::ListOffsetsResponse>, Status> {
        self.core.check_ready()?;
        let req = req.into_inner();
        let mut out = Vec::with_capacity(req.partitions.len());
        for q in &req.partitions {
            out.push(match self.list_offset(q).await {
                Ok(r) => r,
                Err(e) => pb::PartitionOffsetResult {
                    topic: q.topic.clone(),
                    partition: q.partition,
                    error: Some(e.to_proto()),
                    ..Default::default()
                },
            });
        }
        Ok(Response::new(pb::ListOffsetsResponse { partitions: out }))
    }
}
