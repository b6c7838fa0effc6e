//! Node-to-node control calls, served on the peer port beside the Raft transport: forwarding
//! of metadata commands to the metadata leader, and node status for `skein cluster status`.
//!
//! The peer port takes only the metadata commands a node sends on its own behalf or for a
//! client ([`check_forwarded`]); authentication of the calling node comes with the security
//! work, so until then a node's identity is pinned to its configured peer address.

use std::collections::BTreeMap;
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
        if let Err(reason) = check_forwarded(&cmd, &self.broker.config.peers) {
            tracing::warn!(%reason, "refused a metadata command from the peer port");
            return Err(Status::permission_denied(format!(
                "metadata command refused on the peer port: {reason}"
            )));
        }
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

// A topic a client may create is one the metadata accepts.
const _: () = assert!(crate::core::PARTITIONS_MAX as usize <= skein_raft::TOPIC_PARTITIONS_MAX);

/// Whether `cmd` may come over the peer port, where only these legitimately arrive:
/// - commands a node forwards for a client, as the client API builds them: creating a topic
///   (any name but the offsets topic, known configuration keys), deleting one (not the offsets
///   topic), allocating one producer id;
/// - creating the offsets topic, as a node does on a client's first group call (its partition
///   count);
/// - a node registering itself: a configured node id with its configured peer address
///   (`peers`, the same on every node), so that no one re-registers another node elsewhere;
/// - a partition leader reporting its leadership, alone or in a batch of at most
///   [`MetaCommand::LEADERS_PER_COMMAND_MAX`] (the metadata checks each holds a replica).
///
/// The metadata state machine then validates every command again ([`MetaCommand::validate`]).
pub fn check_forwarded(
    cmd: &MetaCommand,
    peers: &BTreeMap<u64, String>,
) -> std::result::Result<(), String> {
    use crate::groups::{OFFSETS_PARTITIONS, OFFSETS_TOPIC};
    match cmd {
        MetaCommand::RegisterNode { id, info } => match peers.get(id) {
            None => Err(format!("node {id} is not a configured peer")),
            Some(addr) if *addr != info.peer_addr => Err(format!(
                "node {id} is configured at {addr}, not {}",
                info.peer_addr
            )),
            Some(_) => Ok(()),
        },
        MetaCommand::CreateTopic {
            name,
            replicas,
            configs,
        } => {
            known_config_keys(configs)?;
            if name == OFFSETS_TOPIC && replicas.len() != OFFSETS_PARTITIONS as usize {
                return Err(format!(
                    "{OFFSETS_TOPIC} has {OFFSETS_PARTITIONS} partitions, not {}",
                    replicas.len()
                ));
            }
            if replicas.len() > crate::core::PARTITIONS_MAX as usize {
                return Err(format!(
                    "a topic has at most {} partitions",
                    crate::core::PARTITIONS_MAX
                ));
            }
            Ok(())
        }
        MetaCommand::AlterTopicConfig { name, configs } => {
            if name == OFFSETS_TOPIC {
                return Err(format!("{OFFSETS_TOPIC}'s settings cannot be changed"));
            }
            known_config_keys(configs)
        }
        MetaCommand::DeleteTopic { name } if name == OFFSETS_TOPIC => {
            Err(format!("{OFFSETS_TOPIC} cannot be deleted"))
        }
        MetaCommand::DeleteTopic { .. } => Ok(()),
        MetaCommand::SetLeader { leader, .. } if !peers.contains_key(leader) => {
            Err(format!("node {leader} is not a configured peer"))
        }
        MetaCommand::SetLeader { .. } => Ok(()),
        MetaCommand::SetLeaders { leaders } => {
            if leaders.len() > MetaCommand::LEADERS_PER_COMMAND_MAX {
                return Err(format!(
                    "a node reports at most {} leaderships at a time, not {}",
                    MetaCommand::LEADERS_PER_COMMAND_MAX,
                    leaders.len()
                ));
            }
            match leaders.iter().find(|(_, l, _)| !peers.contains_key(l)) {
                Some((_, leader, _)) => Err(format!("node {leader} is not a configured peer")),
                None => Ok(()),
            }
        }
        MetaCommand::AllocateProducerIds { count: 1 } => Ok(()),
        MetaCommand::AllocateProducerIds { count } => Err(format!(
            "a client allocates one producer id at a time, not {count}"
        )),
    }
}

fn known_config_keys(configs: &BTreeMap<String, String>) -> std::result::Result<(), String> {
    match configs
        .keys()
        .find(|k| !crate::topics::TOPIC_CONFIG_KEYS.contains(&k.as_str()))
    {
        Some(k) => Err(format!("unknown topic configuration key `{k}`")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skein_raft::NodeInfo;

    fn peers() -> BTreeMap<u64, String> {
        BTreeMap::from([(1, "10.0.0.1:9651".into()), (2, "10.0.0.2:9651".into())])
    }

    fn register(id: u64, peer: &str) -> MetaCommand {
        MetaCommand::RegisterNode {
            id,
            info: NodeInfo {
                peer_addr: peer.into(),
                client_addr: "10.0.0.1:9650".into(),
                kafka_addr: String::new(),
            },
        }
    }

    fn create(name: &str, partitions: usize, configs: &[(&str, &str)]) -> MetaCommand {
        MetaCommand::CreateTopic {
            name: name.into(),
            replicas: vec![vec![1]; partitions],
            configs: configs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn the_offsets_topic_name_is_the_metadatas() {
        assert_eq!(crate::groups::OFFSETS_TOPIC, skein_raft::OFFSETS_TOPIC);
    }

    #[test]
    fn the_peer_port_takes_only_what_nodes_and_clients_send() {
        let p = peers();
        let ok = |c: MetaCommand| check_forwarded(&c, &p).expect("allowed");
        let no = |c: MetaCommand| check_forwarded(&c, &p).expect_err("refused");
        ok(register(2, "10.0.0.2:9651"));
        ok(create("orders", 3, &[("retention.ms", "1000")]));
        ok(create(
            crate::groups::OFFSETS_TOPIC,
            crate::groups::OFFSETS_PARTITIONS as usize,
            &[("segment.bytes", "1048576")],
        ));
        ok(MetaCommand::DeleteTopic {
            name: "orders".into(),
        });
        ok(MetaCommand::SetLeader {
            group: 1,
            leader: 2,
            term: 3,
        });
        ok(MetaCommand::SetLeaders {
            leaders: vec![(1, 2, 3), (2, 1, 3)],
        });
        ok(MetaCommand::AllocateProducerIds { count: 1 });
        ok(MetaCommand::AlterTopicConfig {
            name: "orders".into(),
            configs: BTreeMap::from([("retention.ms".into(), "1".into())]),
        });
        assert!(no(MetaCommand::AlterTopicConfig {
            name: crate::groups::OFFSETS_TOPIC.into(),
            configs: BTreeMap::new(),
        })
        .contains("cannot be changed"));

        // Another node's id at another address; an unknown node.
        assert!(no(register(2, "10.6.6.6:9651")).contains("configured at"));
        assert!(no(register(7, "10.0.0.7:9651")).contains("not a configured peer"));
        assert!(no(MetaCommand::DeleteTopic {
            name: crate::groups::OFFSETS_TOPIC.into()
        })
        .contains("cannot be deleted"));
        assert!(no(create(crate::groups::OFFSETS_TOPIC, 1, &[])).contains("partitions"));
        assert!(no(create("orders", 1, &[("unclean.leader", "x")])).contains("key"));
        assert!(no(create(
            "orders",
            crate::core::PARTITIONS_MAX as usize + 1,
            &[]
        ))
        .contains("at most"));
        assert!(no(MetaCommand::SetLeader {
            group: 1,
            leader: 9,
            term: 1
        })
        .contains("not a configured peer"));
        assert!(no(MetaCommand::SetLeaders {
            leaders: vec![(1, 2, 3), (2, 9, 3)]
        })
        .contains("node 9 is not a configured peer"));
        assert!(no(MetaCommand::SetLeaders {
            leaders: vec![(1, 2, 3); MetaCommand::LEADERS_PER_COMMAND_MAX + 1]
        })
        .contains("at most"));
        assert!(no(MetaCommand::AllocateProducerIds { count: 1_000 }).contains("one producer id"));
    }
}
