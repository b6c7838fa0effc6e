//! Node-to-node control calls, served on the peer port beside the Raft transport: forwarding
//! of metadata commands to the metadata leader, and node status for `skein cluster status`.

use std::sync::Arc;

use skein_proto::v1 as pb;
use skein_raft::MetaCommand;
use tonic::{Request, Response, Status};

use crate::broker::Broker;

/// The `NodeControl` service of a node.
#[derive(Debug, Clone)]
pub struct NodeControlApi {
    broker: Arc<Broker>,
}

impl NodeControlApi {
    /// Serves `broker`'s node-control calls.
    pub fn new(broker: Arc<Broker>) -> Self {
        NodeControlApi { broker }
    }
}

#[tonic::async_trait]
impl pb::node_control_server::NodeControl for NodeControlApi {
    async fn propose_metadata(
        &self,
        req: Request<pb::ProposeMetadataRequest>,
    ) -> Result<Response<pb::ProposeMetadataResponse>, Status> {
        let cmd: MetaCommand = postcard::from_bytes(&req.into_inner().command)
            .map_err(|e| Status::invalid_argument(format!("undecodable metadata command: {e}")))?;
        let leader = self.broker.meta.leader();
        if leader != Some(self.broker.node_id()) {
            let mut s = Status::failed_precondition("this node does not lead the metadata group");
            if let Some(l) = leader.and_then(|l| l.to_string().parse().ok()) {
                s.metadata_mut().insert("skein-leader-id", l);
            }
            return Err(s);
        }
        let outcome = self
            .broker
            .meta
            .propose(&cmd)
            .await
            .map_err(|e| Status::from(self.broker.raft_error(e)))?;
        let bytes = postcard::to_allocvec(&outcome)
            .map_err(|e| Status::internal(format!("encode metadata outcome: {e}")))?;
        Ok(Response::new(pb::ProposeMetadataResponse {
            outcome: bytes.into(),
        }))
    }

    async fn node_status(
        &self,
        _req: Request<pb::NodeStatusRequest>,
    ) -> Result<Response<pb::NodeStatusResponse>, Status> {
        Ok(Response::new(self.broker.local_status()))
    }
}
