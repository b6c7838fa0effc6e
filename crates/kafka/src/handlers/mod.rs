//! Request handlers: decode was done by `request`; each handler calls the backend and builds the
//! response for the request's version. This module dispatches and encodes.

mod admin;
mod api_versions;
mod fetch;
mod group_offsets;
mod groups;
mod metadata;
mod offsets;
mod produce;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::protocol::{Encodable, HeaderVersion, StrBytes};

use crate::backend::{Backend, RequestContext};
use crate::frame::encode_response;
use crate::request::{DecodedRequest, RequestBody};
use crate::{BackendError, KafkaError};

/// True for requests that must run alone and in order on their connection: writes (produce,
/// commits, group membership, topic changes). Kafka runs every request of a connection alone;
/// this listener lets reads run side by side, but a write waits for every earlier request and
/// every later request waits for it, so pipelined writes apply in the order they were sent.
pub(crate) fn is_ordered(body: &RequestBody) -> bool {
    use RequestBody as B;
    match body {
        B::Produce(_)
        | B::OffsetCommit(_)
        | B::JoinGroup(_)
        | B::SyncGroup(_)
        | B::Heartbeat(_)
        | B::LeaveGroup(_)
        | B::DeleteGroups(_)
        | B::CreateTopics(_)
        | B::DeleteTopics(_)
        | B::InitProducerId(_) => true,
        B::ApiVersionsUnsupported
        | B::ApiVersions(_)
        | B::Metadata(_)
        | B::Fetch(_)
        | B::ListOffsets(_)
        | B::OffsetForLeaderEpoch(_)
        | B::FindCoordinator(_)
        | B::OffsetFetch(_)
        | B::ListGroups(_)
        | B::DescribeGroups(_)
        | B::DescribeConfigs(_) => false,
    }
}

/// Where a response goes: the request's api key, version and correlation id.
#[derive(Debug, Clone, Copy)]
struct Reply {
    api_key: i16,
    version: i16,
    correlation_id: i32,
}

impl Reply {
    fn send<M: Encodable + HeaderVersion>(self, body: &M) -> Result<Option<Bytes>, KafkaError> {
        let header_version = M::header_version(self.version);
        encode_response(
            self.api_key,
            self.version,
            header_version,
            self.correlation_id,
            body,
        )
        .map(Some)
    }
}

/// Handles one decoded request. `Ok(None)`: no response is sent (Produce with acks=0).
pub(crate) async fn handle<B: Backend>(
    backend: &B,
    peer: SocketAddr,
    req: DecodedRequest,
) -> Result<Option<Bytes>, KafkaError> {
    let ctx = RequestContext {
        client_id: req.client_id,
        peer,
        api_key: req.api_key as i16,
        api_version: req.version,
    };
    let v = req.version;
    let reply = Reply {
        api_key: ctx.api_key,
        version: v,
        correlation_id: req.correlation_id,
    };
    use RequestBody as R;
    match req.body {
        R::ApiVersionsUnsupported => {
            let body = api_versions::unsupported();
            encode_response(ctx.api_key, 0, 0, req.correlation_id, &body).map(Some)
        }
        R::ApiVersions(_) => reply.send(&api_versions::supported()),
        R::Metadata(r) => reply.send(&metadata::handle(backend, &ctx, r, v).await),
        R::Produce(r) => match produce::handle(backend, &ctx, r, v).await? {
            Some(resp) => reply.send(&resp),
            None => Ok(None),
        },
        R::Fetch(r) => reply.send(&fetch::handle(backend, &ctx, r, v).await),
        R::ListOffsets(r) => reply.send(&offsets::list_offsets(backend, &ctx, r).await),
        R::OffsetForLeaderEpoch(r) => {
            reply.send(&offsets::for_leader_epoch(backend, &ctx, r).await)
        }
        R::FindCoordinator(r) => reply.send(&groups::find_coordinator(backend, &ctx, r, v).await),
        R::JoinGroup(r) => reply.send(&groups::join(backend, &ctx, r, v).await),
        R::SyncGroup(r) => reply.send(&groups::sync(backend, &ctx, r).await),
        R::Heartbeat(r) => reply.send(&groups::heartbeat(backend, &ctx, r).await),
        R::LeaveGroup(r) => reply.send(&groups::leave(backend, &ctx, r, v).await),
        R::ListGroups(r) => reply.send(&groups::list(backend, &ctx, r).await),
        R::DescribeGroups(r) => reply.send(&groups::describe(backend, &ctx, r, v).await),
        R::DeleteGroups(r) => reply.send(&groups::delete(backend, &ctx, r).await),
        R::OffsetCommit(r) => reply.send(&group_offsets::commit(backend, &ctx, r).await),
        R::OffsetFetch(r) => reply.send(&group_offsets::fetch(backend, &ctx, r, v).await),
        R::CreateTopics(r) => reply.send(&admin::create_topics(backend, &ctx, r, v).await),
        R::DeleteTopics(r) => reply.send(&admin::delete_topics(backend, &ctx, r, v).await),
        R::DescribeConfigs(r) => reply.send(&admin::describe_configs(backend, &ctx, r).await),
        R::InitProducerId(r) => reply.send(&admin::init_producer_id(backend, &ctx, r).await),
    }
}

/// A string for a response field.
pub(crate) fn s(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}

/// An optional string for a response field.
pub(crate) fn opt_s(value: Option<String>) -> Option<StrBytes> {
    value.map(StrBytes::from_string)
}

/// A timeout from a request field in milliseconds (negative: zero).
pub(crate) fn millis(ms: i32) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// The error code and message of a failed backend call, logged at debug.
pub(crate) fn fail(ctx: &RequestContext, what: &str, e: &BackendError) -> i16 {
    tracing::debug!(peer = %ctx.peer, api_key = ctx.api_key, error = %e, "{what} failed");
    e.code()
}
