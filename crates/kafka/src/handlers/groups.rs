//! The classic group protocol: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! ListGroups, DescribeGroups, DeleteGroups. Coordination itself is the backend's; member
//! metadata and assignments pass through unread.

use futures_util::future::join_all;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, HeartbeatRequest,
    HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    ListGroupsRequest, ListGroupsResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{millis, opt_s, s};
use crate::backend::{
    Backend, BrokerInfo, GroupProtocol, JoinGroup, JoinGroupResult, LeavingMember, RequestContext,
    SyncGroup,
};
use crate::BackendError;

fn str_opt(v: Option<StrBytes>) -> Option<String> {
    v.map(|s| s.to_string())
}

/// Handles FindCoordinator (v0..=3 one key, v4 a batch of keys).
pub(super) async fn find_coordinator<B: Backend>(
    backend: &B,
    ctx: &RequestContext,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let keys = if version >= 4 {
        req.coordinator_keys
    } else {
        vec![req.key]
    };
    let lookups = keys.into_iter().map(|key| async move {
        let result = match req.key_type {
            0 => backend.find_coordinator(ctx, key.to_string()).await,
            _ => Err(BackendError::TransactionsUnsupported),
        };
        (key, result)
    });
    let results = join_all(lookups).await;
    let fill = |r: Result<BrokerInfo, BackendError>| match r {
        Ok(b) => (0, None, b.node_id, s(b.host), b.port),
        Err(e) => (
            super::fail(ctx, "find coordinator", &e),
            Some(e.to_string()),
            -1,
            s(""),
            -1,
        ),
    };
    let mut resp = FindCoordinatorResponse::default();
    if version >= 4 {
        resp.coordinators = results
            .into_iter()
            .map(|(key, r)| {
                let (code, msg, node, host, port) = fill(r);
                Coordinator::default()
                    .with_key(key)
                    .with_error_code(code)
                    .with_error_message(msg.map(s))
                    .with_node_id(BrokerId(node))
                    .with_host(host)
                    .with_port(port)
            })
            .collect();
    } else if let Some((_, r)) = results.into_iter().next() {
        let (code, msg, node, host, port) = fill(r);
        resp = resp
            .with_error_code(code)
            .with_node_id(BrokerId(node))
            .with_host(host)
            .with_port(port);
        if version >= 1 {
            resp.error_message = msg.map(s);
        }
    }
    resp
}

/// Handles JoinGroup. MEMBER_ID_REQUIRED carries the assigned member id back to the client.
pub(super) async fn join<B: Backend>(
    backend: &B,
    ctx: &RequestContext,
    req: JoinGroupRequest,
    version: i16,
) -> JoinGroupResponse {
    let session = millis(req.session_timeout_ms);
    let join = JoinGroup {
        group_id: req.group_id.0.to_string(),
        member_id: req.member_id.to_string(),
        group_instance_id: str_opt(req.group_instance_id.clone()),
        client_id: ctx.client_id.clone().unwrap_or_default(),
        client_host: ctx.peer.ip().to_string(),
        session_timeout: session,
        rebalance_timeout: if version >= 1 {
            millis(req.rebalance_timeout_ms)
        } else {
            session
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| GroupProtocol {
                name: p.name.to_string(),
                metadata: p.metadata,
            })
            .collect(),
        require_known_member_id: version >= 4 && req.group_instance_id.is_none(),
        reason: str_opt(req.reason),
    };
    let result = backend.join_group(ctx, join).await;
    join_response(ctx, result, req.member_id, version)
}

fn join_response(
    ctx: &RequestContext,
    result: Result<JoinGroupResult, BackendError>,
    member_id: StrBytes,
    version: i16,
) -> JoinGroupResponse {
    let resp = JoinGroupResponse::default();
    match result {
        Ok(j) => {
            let members = j.members.into_iter().map(|m| {
                let out = JoinGroupResponseMember::default()
                    .with_member_id(s(m.member_id))
                    .with_metadata(m.metadata);
                if version >= 5 {
                    out.with_group_instance_id(opt_s(m.group_instance_id))
                } else {
                    out
                }
            });
            let protocol_name = opt_s(j.protocol_name).or_else(|| (version < 7).then(|| s("")));
            let resp = resp
                .with_generation_id(j.generation_id)
                .with_protocol_name(protocol_name)
                .with_leader(s(j.leader))
                .with_member_id(s(j.member_id))
                .with_members(members.collect());
            if version >= 7 {
                resp.with_protocol_type(opt_s(j.protocol_type))
            } else {
                resp
            }
        }
        Err(e) => {
            let code = super::fail(ctx, "join group", &e);
            let member_id = match e {
                BackendError::MemberIdRequired { member_id } => s(member_id),
                _ => member_id,
            };
            let protocol_name = (version < 7).then(|| s(""));
            resp.with_error_code(code)
                .with_generation_id(-1)
                .with_member_id(member_id)
                .with_protocol_name(protocol_name)
        }
    }
}

/// Handles SyncGroup: the leader's assignments in, this member's assignment out.
pub(super) async fn sync<B: Backend>(
    backend: &B,
    ctx: &RequestContext,
    req: SyncGroupRequest,
) -> SyncGroupResponse {
    let version = ctx.api_version;
    let sync = SyncGroup {
        group_id: req.group_id.0.to_string(),
        generation_id: req.generation_id,
        member_id: req.member_id.to_string(),
        group_instance_id: str_opt(req.group_instance_id),
        protocol_type: str_opt(req.protocol_type),
        protocol_name: str_opt(req.protocol_name),
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    match backend.sync_group(ctx, sync).await {
        Ok(r) if version >= 5 => SyncGroupResponse::default()
            .with_assignment(r.assignment)
            .with_protocol_type(opt_s(r.protocol_type))
            .with_protocol_name(opt_s(r.protocol_name)),
        Ok(r) => SyncGroupResponse::default().with_assignment(r.assignment),
        Err(e) => SyncGroupResponse::default().with_error_code(super::fail(ctx, "sync group", &e)),
    }
}

/// Handles Heartbeat.
pub(super) async fn heartbeat<B: Backend>(
    backend: &B,
    ctx: &RequestContext,
    req: HeartbeatRequest,
) -> HeartbeatResponse {
    let group = req.group_id.0.to_string();
    let result = backend
        .heartbeat(
            ctx,
            group,
            req.generation_id,
            req.member_id.to_string(),
            str_opt(req.group_instance_id),
        )
        .await;
    let code = result
        .err()
        .map_or(0, |e| super::fail(ctx, "heartbeat", &e));
    HeartbeatResponse::default().with_error_code(code)
}

/// Handles LeaveGroup (v0..=2 one member, v3+ a batch).
pub(super) async fn leave<B: Backend>(
    backend: &B,
    ctx: &RequestContext,
    req: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let members: Vec<LeavingMember> = if version >= 3 {
        req.members
            .into_iter()
            .map(|m| LeavingMember {
                member_id: m.member_id.to_string(),
                group_instance_id: str_opt(m.group_instance_id),
                reason: str_opt(m.reason),
            })
            .collect()
    } else {
        vec![LeavingMember {
            member_id: req.member_id.to_string(),
            group_instance_id: None,
            reason: None,
        }]
    };
    let echo: Vec<_> = members
        .iter()
        .map(|m| (s(m.member_id.clone()), opt_s(m.group_instance_id.clone())))
        .collect();
    match backend
        .leave_group(ctx, req.group_id.0.to_string(), members)
        .await
    {
        Err(e) => {
            LeaveGroupResponse::default().with_error_code(super::fail(ctx, "leave group", &e))
        }
        Ok(results) if version >= 3 => {
            let members = echo.into_iter().zip(results).map(|((id, instance), r)| {
                let code = r
                    .err()
                    .map_or(0, |e| super::fail(ctx, "leave group member", &e));
                MemberResponse::default()
                    .with_member_id(id)
                    .with_group_instance_id(instance)
                    .with_error_code(code)
            });
            LeaveGroupResponse::default().with_members(members.collect())
        }
        Ok(results) => {
            let code = results
                .into_iter()
                .find_map(Result::err)
                .map_or(0, |e| super::fail(ctx, "leave group", &e));
            LeaveGroupResponse::default().with_error_code(code)
        }
    }
}

/// Handles ListGroups.
pub(super) async fn list<B: Backend>(
    backend: &B,
    ctx: &RequestContext,
    req: ListGroupsRequest,
) -> ListGroupsResponse {
    let states = req
        .states_filter
        .into_iter()
        .map(|s| s.to_string())
        .collect();
    match backend.list_groups(ctx, states).await {
        Ok(groups) => {
            let v4 = ctx.api_version >= 4;
            let groups = groups.into_iter().map(|g| {
                let out = ListedGroup::default()
                    .with_group_id(kafka_protocol::messages::GroupId(s(g.group_id)))
                    .with_protocol_type(s(g.protocol_type));
                if v4 {
                    out.with_group_state(s(g.state))
                } else {
                    out
                }
            });
            ListGroupsResponse::default().with_groups(groups.collect())
        }
        Err(e) => {
            ListGroupsResponse::default().with_error_code(super::fail(ctx, "list groups", &e))
        }
    }
}

/// Handles DescribeGroups. An unknown group is reported as state `Dead` with no error, as Kafka
/// does before v6.
pub(super) async fn describe<B: Backend>(
    backend: &B,
    ctx: &RequestContext,
    req: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let lookups = req.groups.into_iter().map(|group_id| async move {
        let out = DescribedGroup::default().with_group_id(group_id.clone());
        match backend.describe_group(ctx, group_id.0.to_string()).await {
            Ok(d) => {
                let members = d.members.into_iter().map(|m| {
                    let out = DescribedGroupMember::default()
                        .with_member_id(s(m.member_id))
                        .with_client_id(s(m.client_id))
                        .with_client_host(s(m.client_host))
                        .with_member_metadata(m.metadata)
                        .with_member_assignment(m.assignment);
                    if version >= 4 {
                        out.with_group_instance_id(opt_s(m.group_instance_id))
                    } else {
                        out
                    }
                });
                out.with_group_state(s(d.state))
                    .with_protocol_type(s(d.protocol_type))
                    .with_protocol_data(s(d.protocol))
                    .with_members(members.collect())
            }
            Err(BackendError::GroupIdNotFound) => out.with_group_state(s("Dead")),
            Err(e) => out.with_error_code(super::fail(ctx, "describe group", &e)),
        }
    });
    DescribeGroupsResponse::default().with_groups(join_all(lookups).await)
}

/// Handles DeleteGroups.
pub(super) async fn delete<B: Backend>(
    backend: &B,
    ctx: &RequestContext,
    req: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let deletes = req.groups_names.into_iter().map(|group_id| async move {
        let result = backend.delete_group(ctx, group_id.0.to_string()).await;
        let code = result
            .err()
            .map_or(0, |e| super::fail(ctx, "delete group", &e));
        DeletableGroupResult::default()
            .with_group_id(group_id)
            .with_error_code(code)
    });
    DeleteGroupsResponse::default().with_results(join_all(deletes).await)
}
