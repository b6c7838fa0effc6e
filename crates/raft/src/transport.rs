//! The Raft transport: one gRPC service per node for all its groups, one HTTP/2 connection
//! (tonic `Channel`) per peer node shared by all groups.
//!
//! Openraft's control structures are encoded with postcard inside protobuf `bytes`; record
//! batches travel as raw bytes. Every call has a timeout; a peer that cannot be reached is
//! reported as `Unreachable`, which makes openraft back off (exponentially, see
//! [`RaftConfig`]) while tonic re-establishes the connection.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io::Cursor;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{EntryPayload, RPCTypes, Raft, RaftNetwork, RaftNetworkFactory, Snapshot};
use skein_proto::v1 as pb;
use skein_proto::v1::raft_transport_client::RaftTransportClient;
use tonic::transport::{Channel, Endpoint};

use crate::config::RaftConfig;
use crate::error::Error;
use crate::log_store::log_id;
use crate::registry::{Registry, Route};
use crate::types::{decode, encode, GroupId, Node, NodeId, RecordBatch, SkeinTypes, Vote};

/// Largest gRPC message the transport sends or accepts.
pub(crate) fn message_bytes_max(config: &RaftConfig) -> usize {
    usize::try_from(config.append_bytes_max.saturating_mul(2))
        .unwrap_or(usize::MAX)
        .max(64 << 20)
}

// ---------------------------------------------------------------------------------------------
// Wire encoding of entries.

fn entry_to_wire<C: SkeinTypes>(e: &openraft::Entry<C>) -> pb::RaftEntry {
    let (kind, payload) = match &e.payload {
        EntryPayload::Blank => (pb::RaftEntryKind::Blank, Bytes::new()),
        EntryPayload::Normal(RecordBatch(b)) => (pb::RaftEntryKind::Normal, b.clone()),
        EntryPayload::Membership(m) => (pb::RaftEntryKind::Membership, Bytes::from(encode(m))),
    };
    pb::RaftEntry {
        term: e.log_id.leader_id.term,
        index: e.log_id.index,
        kind: kind as i32,
        payload,
    }
}

fn entry_from_wire<C: SkeinTypes>(w: pb::RaftEntry) -> crate::Result<openraft::Entry<C>> {
    let payload = match pb::RaftEntryKind::try_from(w.kind) {
        Ok(pb::RaftEntryKind::Blank) => EntryPayload::Blank,
        Ok(pb::RaftEntryKind::Normal) => EntryPayload::Normal(RecordBatch(w.payload)),
        Ok(pb::RaftEntryKind::Membership) => {
            EntryPayload::Membership(decode("membership entry", &w.payload)?)
        }
        Err(_) => {
            return Err(Error::InvalidConfig(format!(
                "unknown raft entry kind {}",
                w.kind
            )))
        }
    };
    Ok(openraft::Entry {
        log_id: log_id(w.term, w.index),
        payload,
    })
}

fn ok_reply<T: serde::Serialize>(value: &T) -> pb::RaftReply {
    pb::RaftReply {
        result: Some(pb::raft_reply::Result::Ok(Bytes::from(encode(value)))),
    }
}

fn err_reply(failure: pb::RaftFailure, message: String, detail: Bytes) -> pb::RaftReply {
    pb::RaftReply {
        result: Some(pb::raft_reply::Result::Error(pb::RaftError {
            failure: failure as i32,
            message,
            detail,
        })),
    }
}

// ---------------------------------------------------------------------------------------------
// Client side.

#[derive(Debug, Default)]
struct Peers {
    /// Peer -> (address, channel).
    channels: HashMap<NodeId, (String, Channel)>,
    /// Peers this node's calls are cut off from (fault injection, see [`PeerPool::cut`]).
    cut: HashSet<NodeId>,
}

#[derive(Debug)]
struct PoolInner {
    node: NodeId,
    config: RaftConfig,
    peers: Mutex<Peers>,
}

/// The node's connections to its peers: one lazily connected channel per peer node, shared by
/// every group. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PeerPool {
    inner: Arc<PoolInner>,
}

impl PeerPool {
    /// A pool for node `node`.
    pub fn new(node: NodeId, config: RaftConfig) -> Self {
        PeerPool {
            inner: Arc::new(PoolInner {
                node,
                config,
                peers: Mutex::new(Peers::default()),
            }),
        }
    }

    pub(crate) fn channel(&self, target: NodeId, addr: &str) -> Result<Channel, Unreachable> {
        let mut peers = self
            .inner
            .peers
            .lock()
            .expect("invariant: peer pool lock is never poisoned");
        if peers.cut.contains(&target) {
            return Err(Unreachable::new(&std::io::Error::other(format!(
                "node {} is cut off from node {target}",
                self.inner.node
            ))));
        }
        if let Some((a, ch)) = peers.channels.get(&target) {
            if a == addr {
                return Ok(ch.clone());
            }
        }
        let c = &self.inner.config;
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Unreachable::new(&e))?
            .connect_timeout(Duration::from_millis(c.connect_timeout_ms))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(20));
        let ch = endpoint.connect_lazy();
        peers.channels.insert(target, (addr.to_owned(), ch.clone()));
        Ok(ch)
    }

    /// Forgets the connection to `target` (e.g. the node left the cluster).
    pub fn remove(&self, target: NodeId) {
        self.inner
            .peers
            .lock()
            .expect("invariant: peer pool lock is never poisoned")
            .channels
            .remove(&target);
    }

    /// Fault injection: every call this node makes to `target`, in every group, fails as
    /// unreachable until [`PeerPool::heal`]. Calls from `target` to this node are not affected;
    /// cut both directions to partition two nodes.
    pub fn cut(&self, target: NodeId) {
        self.inner
            .peers
            .lock()
            .expect("invariant: peer pool lock is never poisoned")
            .cut
            .insert(target);
    }

    /// Undoes [`PeerPool::cut`].
    pub fn heal(&self, target: NodeId) {
        self.inner
            .peers
            .lock()
            .expect("invariant: peer pool lock is never poisoned")
            .cut
            .remove(&target);
    }
}

/// Creates openraft network clients for one group on the shared [`PeerPool`].
#[derive(Debug)]
pub struct NetworkFactory<C> {
    group: GroupId,
    pool: PeerPool,
    _types: PhantomData<C>,
}

impl<C> NetworkFactory<C> {
    pub(crate) fn new(group: GroupId, pool: PeerPool) -> Self {
        NetworkFactory {
            group,
            pool,
            _types: PhantomData,
        }
    }
}

impl<C: SkeinTypes> RaftNetworkFactory<C> for NetworkFactory<C> {
    type Network = PeerClient<C>;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Self::Network {
        PeerClient {
            group: self.group,
            target,
            addr: node.addr.clone(),
            pool: self.pool.clone(),
            _types: PhantomData,
        }
    }
}

/// One group's view of one peer.
#[derive(Debug)]
pub struct PeerClient<C> {
    group: GroupId,
    target: NodeId,
    addr: String,
    pool: PeerPool,
    _types: PhantomData<C>,
}

type RpcErr<E = RaftError<NodeId>> = RPCError<NodeId, Node, E>;

/// How a call failed, before it is shaped into the error type a given openraft method wants.
enum CallError {
    Timeout(Duration),
    Unreachable(Unreachable),
    Network(NetworkError),
    Remote(pb::RaftError),
}

impl CallError {
    fn into_rpc<E: std::error::Error>(
        self,
        action: RPCTypes,
        id: NodeId,
        target: NodeId,
    ) -> RpcErr<E> {
        match self {
            CallError::Timeout(timeout) => RPCError::Timeout(Timeout {
                action,
                id,
                target,
                timeout,
            }),
            CallError::Unreachable(u) => RPCError::Unreachable(u),
            CallError::Network(n) => RPCError::Network(n),
            CallError::Remote(e) => RPCError::Unreachable(Unreachable::new(&remote_error(e))),
        }
    }
}

fn remote_error(e: pb::RaftError) -> std::io::Error {
    std::io::Error::other(format!(
        "remote raft failure {:?}: {}",
        pb::RaftFailure::try_from(e.failure).unwrap_or(pb::RaftFailure::Unspecified),
        e.message
    ))
}

impl<C: SkeinTypes> PeerClient<C> {
    async fn call<F, Fut>(&self, ttl: Duration, f: F) -> Result<Bytes, CallError>
    where
        F: FnOnce(RaftTransportClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<pb::RaftReply>, tonic::Status>>,
    {
        let ch = self
            .pool
            .channel(self.target, &self.addr)
            .map_err(CallError::Unreachable)?;
        let max = message_bytes_max(&self.pool.inner.config);
        let client = RaftTransportClient::new(ch)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
        let reply = match tokio::time::timeout(ttl, f(client)).await {
            Err(_) => return Err(CallError::Timeout(ttl)),
            Ok(Err(status)) => {
                return Err(match status.code() {
                    tonic::Code::Unavailable | tonic::Code::Unknown => {
                        CallError::Unreachable(Unreachable::new(&status))
                    }
                    tonic::Code::DeadlineExceeded => CallError::Timeout(ttl),
                    _ => CallError::Network(NetworkError::new(&status)),
                })
            }
            Ok(Ok(r)) => r.into_inner(),
        };
        match reply.result {
            Some(pb::raft_reply::Result::Ok(b)) => Ok(b),
            Some(pb::raft_reply::Result::Error(e)) => Err(CallError::Remote(e)),
            None => Err(CallError::Network(NetworkError::new(
                &std::io::Error::other("empty raft reply"),
            ))),
        }
    }

    fn request<T>(&self, msg: T, ttl: Duration) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.set_timeout(ttl);
        r
    }

    fn decode_reply<T: for<'a> serde::Deserialize<'a>>(b: &[u8]) -> Result<T, NetworkError> {
        decode("raft reply", b).map_err(|e| NetworkError::new(&e))
    }
}

impl<C: SkeinTypes> RaftNetwork<C> for PeerClient<C> {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        let ttl = option.hard_ttl();
        let msg = pb::RaftAppendEntriesRequest {
            group_id: self.group,
            vote: Bytes::from(encode(&rpc.vote)),
            prev_log_id: Bytes::from(encode(&rpc.prev_log_id)),
            leader_commit: Bytes::from(encode(&rpc.leader_commit)),
            entries: rpc.entries.iter().map(entry_to_wire).collect(),
        };
        let req = self.request(msg, ttl);
        let b = self
            .call(ttl, |mut c| async move { c.append_entries(req).await })
            .await
            .map_err(|e| e.into_rpc(RPCTypes::AppendEntries, self.pool.inner.node, self.target))?;
        Self::decode_reply(&b).map_err(RPCError::Network)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<C>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<RaftError<NodeId, InstallSnapshotError>>>
    {
        let ttl = option.hard_ttl();
        let msg = pb::RaftSnapshotChunk {
            group_id: self.group,
            vote: Bytes::from(encode(&rpc.vote)),
            meta: Bytes::from(encode(&rpc.meta)),
            offset: rpc.offset,
            data: Bytes::from(rpc.data),
            done: rpc.done,
        };
        let req = self.request(msg, ttl);
        let r = self
            .call(ttl, |mut c| async move { c.install_snapshot(req).await })
            .await;
        match r {
            Ok(b) => Self::decode_reply(&b).map_err(RPCError::Network),
            Err(CallError::Remote(e)) if e.failure == pb::RaftFailure::SnapshotMismatch as i32 => {
                let m = Self::decode_reply(&e.detail).map_err(RPCError::Network)?;
                Err(RPCError::RemoteError(RemoteError::new(
                    self.target,
                    RaftError::APIError(InstallSnapshotError::SnapshotMismatch(m)),
                )))
            }
            Err(e) => Err(e.into_rpc(RPCTypes::InstallSnapshot, self.pool.inner.node, self.target)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        let ttl = option.hard_ttl();
        let msg = pb::RaftVoteRequest {
            group_id: self.group,
            request: Bytes::from(encode(&rpc)),
        };
        let req = self.request(msg, ttl);
        let b = self
            .call(ttl, |mut c| async move { c.vote(req).await })
            .await
            .map_err(|e| e.into_rpc(RPCTypes::Vote, self.pool.inner.node, self.target))?;
        Self::decode_reply(&b).map_err(RPCError::Network)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot<C>,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<C, Fatal<NodeId>>> {
        let ttl = option.hard_ttl();
        let msg = pb::RaftFullSnapshot {
            group_id: self.group,
            vote: Bytes::from(encode(&vote)),
            meta: Bytes::from(encode(&snapshot.meta)),
            data: Bytes::from(snapshot.snapshot.into_inner()),
        };
        let req = self.request(msg, ttl);
        let call = self.call(ttl, |mut c| async move { c.full_snapshot(req).await });
        let r = tokio::select! {
            r = call => r,
            closed = cancel => return Err(StreamingError::Closed(closed)),
        };
        match r {
            Ok(b) => Self::decode_reply(&b).map_err(StreamingError::Network),
            Err(CallError::Timeout(timeout)) => Err(StreamingError::Timeout(Timeout {
                action: RPCTypes::InstallSnapshot,
                id: self.pool.inner.node,
                target: self.target,
                timeout,
            })),
            Err(CallError::Unreachable(u)) => Err(StreamingError::Unreachable(u)),
            Err(CallError::Network(n)) => Err(StreamingError::Network(n)),
            Err(CallError::Remote(e)) => Err(StreamingError::Unreachable(Unreachable::new(
                &remote_error(e),
            ))),
        }
    }

    fn backoff(&self) -> Backoff {
        let c = &self.pool.inner.config;
        let (min, max) = (c.reconnect_backoff_min_ms, c.reconnect_backoff_max_ms);
        Backoff::new(
            std::iter::successors(Some(min), move |d| Some(d.saturating_mul(2).min(max)))
                .map(Duration::from_millis),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Server side.

/// The node's Raft gRPC service: routes every request to its group through the [`Registry`].
#[derive(Debug, Clone)]
pub struct RaftService {
    registry: Arc<Registry>,
}

impl RaftService {
    /// A service for the groups of `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        RaftService { registry }
    }

    /// HTTP/2 flow-control window (per stream and per connection) the Raft server should grant:
    /// two full AppendEntries requests (`2 x append_bytes_max`, at least 1 MiB). With hyper's
    /// default of 1 MiB, a sender of an 8 MiB request stops every megabyte to wait for a window
    /// update; on loopback that cut replicated throughput about fourfold
    /// (`docs/benchmarks.md`, "Replication").
    pub fn http2_window_bytes(config: &RaftConfig) -> u32 {
        let w = config.append_bytes_max.saturating_mul(2).max(1 << 20);
        // HTTP/2 windows are at most 2^31 - 1.
        u32::try_from(w.min((1 << 31) - 1)).unwrap_or(u32::MAX >> 1)
    }

    /// A tonic server builder tuned for Raft traffic; the node adds the services it serves on
    /// it (this one via [`RaftService::into_server`]): flow-control windows of
    /// [`RaftService::http2_window_bytes`] and frames of up to 1 MiB (hyper's default is 16 KiB,
    /// so a 110 KB batch would be seven frames).
    pub fn server_builder(config: &RaftConfig) -> tonic::transport::Server {
        let window = Self::http2_window_bytes(config);
        tonic::transport::Server::builder()
            .initial_stream_window_size(window)
            .initial_connection_window_size(window)
            .max_frame_size(1 << 20)
            .tcp_nodelay(true)
    }

    /// Connections accepted from an already bound listener, with `TCP_NODELAY` (tonic's
    /// `serve_with_incoming` ignores the builder's `tcp_nodelay`; without it a small reply can
    /// wait for the peer's delayed ACK).
    pub fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
        tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
    }

    /// The tonic server for this service, with message limits matching the client's.
    pub fn into_server(self) -> pb::raft_transport_server::RaftTransportServer<Self> {
        let max = message_bytes_max(self.registry.config());
        pb::raft_transport_server::RaftTransportServer::new(self)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max)
    }
}

fn not_found(group: GroupId) -> pb::RaftReply {
    err_reply(
        pb::RaftFailure::GroupNotFound,
        format!("no raft group {group} on this node"),
        Bytes::new(),
    )
}

fn bad_request(e: Error) -> pb::RaftReply {
    err_reply(pb::RaftFailure::BadRequest, e.to_string(), Bytes::new())
}

fn stopped(e: impl std::fmt::Display) -> pb::RaftReply {
    err_reply(pb::RaftFailure::Stopped, e.to_string(), Bytes::new())
}

async fn append<C: SkeinTypes>(raft: Raft<C>, req: pb::RaftAppendEntriesRequest) -> pb::RaftReply {
    let decoded = (|| -> crate::Result<AppendEntriesRequest<C>> {
        Ok(AppendEntriesRequest {
            vote: decode("vote", &req.vote)?,
            prev_log_id: decode("prev_log_id", &req.prev_log_id)?,
            leader_commit: decode("leader_commit", &req.leader_commit)?,
            entries: req
                .entries
                .into_iter()
                .map(entry_from_wire)
                .collect::<crate::Result<_>>()?,
        })
    })();
    match decoded {
        Err(e) => bad_request(e),
        Ok(rpc) => match raft.append_entries(rpc).await {
            Ok(r) => ok_reply(&r),
            Err(e) => stopped(e),
        },
    }
}

async fn vote<C: SkeinTypes>(raft: Raft<C>, req: pb::RaftVoteRequest) -> pb::RaftReply {
    match decode::<VoteRequest<NodeId>>("vote request", &req.request) {
        Err(e) => bad_request(e),
        Ok(rpc) => match raft.vote(rpc).await {
            Ok(r) => ok_reply(&r),
            Err(e) => stopped(e),
        },
    }
}

async fn chunk<C: SkeinTypes>(raft: Raft<C>, req: pb::RaftSnapshotChunk) -> pb::RaftReply {
    let decoded = (|| -> crate::Result<InstallSnapshotRequest<C>> {
        Ok(InstallSnapshotRequest {
            vote: decode("vote", &req.vote)?,
            meta: decode("snapshot meta", &req.meta)?,
            offset: req.offset,
            data: req.data.to_vec(),
            done: req.done,
        })
    })();
    match decoded {
        Err(e) => bad_request(e),
        Ok(rpc) => match raft.install_snapshot(rpc).await {
            Ok(r) => ok_reply(&r),
            Err(RaftError::APIError(InstallSnapshotError::SnapshotMismatch(m))) => err_reply(
                pb::RaftFailure::SnapshotMismatch,
                m.to_string(),
                Bytes::from(encode(&m)),
            ),
            Err(e) => stopped(e),
        },
    }
}

async fn full<C: SkeinTypes>(raft: Raft<C>, req: pb::RaftFullSnapshot) -> pb::RaftReply {
    let decoded = (|| -> crate::Result<(Vote, Snapshot<C>)> {
        Ok((
            decode("vote", &req.vote)?,
            Snapshot {
                meta: decode("snapshot meta", &req.meta)?,
                snapshot: Box::new(Cursor::new(req.data.to_vec())),
            },
        ))
    })();
    match decoded {
        Err(e) => bad_request(e),
        Ok((v, s)) => match raft.install_full_snapshot(v, s).await {
            Ok(r) => ok_reply(&r),
            Err(e) => stopped(e),
        },
    }
}

type Reply = Result<tonic::Response<pb::RaftReply>, tonic::Status>;

#[tonic::async_trait]
impl pb::raft_transport_server::RaftTransport for RaftService {
    async fn append_entries(&self, request: tonic::Request<pb::RaftAppendEntriesRequest>) -> Reply {
        let req = request.into_inner();
        let reply = match self.registry.route(req.group_id) {
            Some(Route::Partition(r)) => append(r, req).await,
            Some(Route::Metadata(r)) => append(r, req).await,
            None => not_found(req.group_id),
        };
        Ok(tonic::Response::new(reply))
    }

    async fn vote(&self, request: tonic::Request<pb::RaftVoteRequest>) -> Reply {
        let req = request.into_inner();
        let reply = match self.registry.route(req.group_id) {
            Some(Route::Partition(r)) => vote(r, req).await,
            Some(Route::Metadata(r)) => vote(r, req).await,
            None => not_found(req.group_id),
        };
        Ok(tonic::Response::new(reply))
    }

    async fn install_snapshot(&self, request: tonic::Request<pb::RaftSnapshotChunk>) -> Reply {
        let req = request.into_inner();
        let reply = match self.registry.route(req.group_id) {
            Some(Route::Partition(r)) => chunk(r, req).await,
            Some(Route::Metadata(r)) => chunk(r, req).await,
            None => not_found(req.group_id),
        };
        Ok(tonic::Response::new(reply))
    }

    async fn node_heartbeat(
        &self,
        request: tonic::Request<pb::RaftNodeHeartbeat>,
    ) -> Result<tonic::Response<pb::RaftNodeHeartbeatReply>, tonic::Status> {
        let wake = self
            .registry
            .liveness()
            .receive(&request.into_inner())
            .map_err(tonic::Status::invalid_argument)?;
        Ok(tonic::Response::new(pb::RaftNodeHeartbeatReply { wake }))
    }

    async fn full_snapshot(&self, request: tonic::Request<pb::RaftFullSnapshot>) -> Reply {
        let req = request.into_inner();
        let reply = match self.registry.route(req.group_id) {
            Some(Route::Partition(r)) => full(r, req).await,
            Some(Route::Metadata(r)) => full(r, req).await,
            None => not_found(req.group_id),
        };
        Ok(tonic::Response::new(reply))
    }
}
