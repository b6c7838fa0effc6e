//! Openraft type configurations and the application data they carry.

use std::fmt;
use std::io::Cursor;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A node's id in the cluster.
pub type NodeId = u64;
/// A Raft group's id: one per partition replica set, plus the metadata group.
pub type GroupId = u64;
/// What membership stores about a node: its peer (Raft gRPC) address.
pub type Node = openraft::BasicNode;
/// Openraft's log id with Skein's node id.
pub type LogId = openraft::LogId<NodeId>;
/// Openraft's vote with Skein's node id.
pub type Vote = openraft::Vote<NodeId>;
/// A membership configuration.
pub type Membership = openraft::Membership<NodeId, Node>;
/// A membership configuration and the log id of the entry that holds it.
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;

/// A record batch in the format of [`skein_storage::batch`]: the application data of a Raft
/// entry. Before it is appended its first 24 bytes (base offset, term, index) are whatever the
/// producer left there; once read back from the log they carry what the log stamped.
#[derive(Clone, PartialEq, Eq)]
pub struct RecordBatch(pub Bytes);

impl fmt::Debug for RecordBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordBatch({} bytes)", self.0.len())
    }
}

impl fmt::Display for RecordBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "batch of {} bytes", self.0.len())
    }
}

// Serde support is required by openraft's `serde` feature; Skein's transport never uses it for
// batches (they travel as raw protobuf `bytes`).
impl Serialize for RecordBatch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for RecordBatch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RecordBatch;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("record batch bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<RecordBatch, E> {
                Ok(RecordBatch(Bytes::copy_from_slice(v)))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<RecordBatch, E> {
                Ok(RecordBatch(Bytes::from(v)))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// What applying a produced batch returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProduceResponse {
    /// Offset of the batch's first record.
    pub base_offset: u64,
    /// Number of records the batch holds.
    pub record_count: u32,
    /// True when the batch repeated an idempotent producer's earlier batch: `base_offset` is the
    /// original batch's.
    pub duplicate: bool,
}

/// What applying a metadata command returns: the applier's encoded answer (empty for Raft-internal
/// entries).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MetaResponse(pub Vec<u8>);

openraft::declare_raft_types!(
    /// Type configuration of a partition's Raft group: entries are record batches, the response
    /// carries the assigned base offset.
    pub PartitionTypes:
        D = RecordBatch,
        R = ProduceResponse,
        NodeId = NodeId,
        Node = Node,
        Entry = openraft::Entry<PartitionTypes>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

openraft::declare_raft_types!(
    /// Type configuration of the metadata group: entries are batches whose one record is a
    /// serialized metadata command.
    pub MetaTypes:
        D = RecordBatch,
        R = MetaResponse,
        NodeId = NodeId,
        Node = Node,
        Entry = openraft::Entry<MetaTypes>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The type configurations this crate's storage and transport work with: record batches as
/// application data, `u64` node ids, [`openraft::BasicNode`] nodes, openraft's own entry type.
pub trait SkeinTypes:
    openraft::RaftTypeConfig<
    D = RecordBatch,
    NodeId = NodeId,
    Node = Node,
    Entry = openraft::Entry<Self>,
    SnapshotData = Cursor<Vec<u8>>,
    AsyncRuntime = openraft::TokioRuntime,
    Responder = openraft::impls::OneshotResponder<Self>,
>
{
}

impl SkeinTypes for PartitionTypes {}
impl SkeinTypes for MetaTypes {}

/// Encodes a value with the crate's compact binary codec (postcard).
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("invariant: postcard serialization into a Vec cannot fail")
}

/// Decodes a value written by [`encode`].
pub(crate) fn decode<'a, T: Deserialize<'a>>(
    what: &'static str,
    bytes: &'a [u8],
) -> crate::Result<T> {
    postcard::from_bytes(bytes).map_err(|source| crate::Error::Decode { what, source })
}
