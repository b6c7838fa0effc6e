//! The classic state machine under paused time: every deadline is reached with
//! `tokio::time::advance` and handled by `tick`, as the coordinator's group timer does.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::{advance, Instant};

use super::*;

const SESSION: Duration = Duration::from_secs(10);
const REBALANCE: Duration = Duration::from_secs(30);

fn req(member_id: &str, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        member_id: member_id.into(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "127.0.0.1".into(),
        session_timeout: SESSION,
        rebalance_timeout: REBALANCE,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), Bytes::from(format!("{p}-meta"))))
            .collect(),
        require_known_member_id: true,
    }
}

/// The answer that is already there (now, or sent through the channel).
fn ready<T: std::fmt::Debug>(r: Reply<T>) -> Result<T> {
    match r {
        Reply::Now(r) => r,
        Reply::Later(mut rx) => rx.try_recv().expect("answered"),
    }
}

fn later<T: std::fmt::Debug>(r: Reply<T>) -> oneshot::Receiver<Result<T>> {
    match r {
        Reply::Later(rx) => rx,
        Reply::Now(r) => panic!("expected to wait, got {r:?}"),
    }
}

/// A member id through MEMBER_ID_REQUIRED, as a v4+ client gets it.
fn member_id(g: &mut ClassicGroup, id: &str) -> String {
    let r = g.join(req("", &["range"]), Instant::now(), || id.to_owned());
    match ready(r) {
        Err(NodeError::MemberIdRequired { member_id, .. }) => member_id,
        other => panic!("expected MEMBER_ID_REQUIRED, got {other:?}"),
    }
}

fn assignment(tag: &str) -> Bytes {
    Bytes::from(tag.to_owned())
}

/// A stable group of the given members (the first is the leader) and its generation.
fn stable(ids: &[&str]) -> (ClassicGroup, i32) {
    let mut g = ClassicGroup::new("g", "consumer");
    for (i, id) in ids.iter().enumerate() {
        let id = member_id(&mut g, id);
        let mut replies = vec![g.join(req(&id, &["range"]), Instant::now(), || unreachable!())];
        for prev in &ids[..i] {
            replies.push(g.join(req(prev, &["range"]), Instant::now(), || unreachable!()));
        }
        for r in replies {
            assert_eq!(ready(r).expect("joined").generation, g.generation);
        }
    }
    let gen = g.generation;
    let leader = g.leader.clone().expect("leader");
    assert_eq!(leader, ids[0]);
    let all = ids.iter().map(|i| (i.to_string(), assignment(i))).collect();
    ready(g.sync(&leader, None, gen, all, Instant::now())).expect("synced");
    assert_eq!(g.state, ClassicState::Stable);
    (g, gen)
}

#[tokio::test(start_paused = true)]
async fn member_id_required_then_join_sync_heartbeat_leave() {
    let mut g = ClassicGroup::new("g", "consumer");
    let id = member_id(&mut g, "m1");
    assert!(g.members.is_empty(), "a member id alone is no member");
    let j = ready(g.join(req(&id, &["range"]), Instant::now(), || unreachable!())).expect("ok");
    assert_eq!(
        (j.generation, j.leader.as_str(), j.protocol.as_str()),
        (1, "m1", "range")
    );
    assert_eq!(
        j.members.len(),
        1,
        "the leader gets every member's metadata"
    );
    assert_eq!(j.members[0].2, Bytes::from("range-meta"));
    assert_eq!(g.state, ClassicState::CompletingRebalance);
    let s = ready(g.sync(
        "m1",
        None,
        1,
        vec![("m1".into(), assignment("a1"))],
        Instant::now(),
    ));
    assert_eq!(s.expect("ok").assignment, assignment("a1"));
    assert_eq!(g.state, ClassicState::Stable);
    g.heartbeat("m1", None, 1, Instant::now()).expect("ok");
    assert!(matches!(
        g.heartbeat("m1", None, 0, Instant::now()),
        Err(NodeError::IllegalGeneration { .. })
    ));
    assert!(matches!(
        g.heartbeat("nobody", None, 1, Instant::now()),
        Err(NodeError::UnknownMember { .. })
    ));
    g.leave("m1", None, Instant::now()).expect("ok");
    assert_eq!(g.state, ClassicState::Empty);
    assert!(g.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_third_member_rebalances_and_only_the_leader_gets_metadata() {
    let (mut g, gen) = stable(&["a", "b"]);
    let c = member_id(&mut g, "c");
    let mut wait_c = later(g.join(req(&c, &["range"]), Instant::now(), || unreachable!()));
    assert_eq!(g.state, ClassicState::PreparingRebalance);
    assert!(matches!(
        g.heartbeat("a", None, gen, Instant::now()),
        Err(NodeError::RebalanceInProgress(_))
    ));
    // Commits of the current generation are accepted while members rejoin (eager protocol).
    g.check_commit("b", None, gen, Instant::now()).expect("ok");
    let mut wait_a = later(g.join(req("a", &["range"]), Instant::now(), || unreachable!()));
    assert!(wait_a.try_recv().is_err(), "b has not joined again yet");
    let b = ready(g.join(req("b", &["range"]), Instant::now(), || unreachable!())).expect("ok");
    let a = wait_a.try_recv().expect("answered").expect("ok");
    let c = wait_c.try_recv().expect("answered").expect("ok");
    let next = gen + 1;
    assert_eq!(
        (a.generation, b.generation, c.generation),
        (next, next, next)
    );
    assert_eq!(a.leader, "a");
    assert_eq!(
        (a.members.len(), b.members.len(), c.members.len()),
        (3, 0, 0)
    );
    assert!(matches!(
        g.check_commit("b", None, next, Instant::now()),
        Err(NodeError::RebalanceInProgress(_))
    ));
    // A follower syncs first and waits for the leader's assignments.
    let mut sync_b = later(g.sync("b", None, next, Vec::new(), Instant::now()));
    assert!(sync_b.try_recv().is_err());
    let given = vec![("b".into(), assignment("B")), ("c".into(), assignment("C"))];
    let mine = ready(g.sync("a", None, next, given, Instant::now())).expect("ok");
    assert_eq!(mine.assignment, Bytes::new(), "no assignment for a: empty");
    assert_eq!(
        sync_b.try_recv().expect("answered").expect("ok").assignment,
        assignment("B")
    );
    let late = ready(g.sync("c", None, next, Vec::new(), Instant::now())).expect("ok");
    assert_eq!(
        late.assignment,
        assignment("C"),
        "stable: the stored assignment"
    );
    g.check_commit("c", None, next, Instant::now()).expect("ok");
    assert!(matches!(
        g.check_commit("c", None, gen, Instant::now()),
        Err(NodeError::IllegalGeneration { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn members_that_do_not_rejoin_are_removed_at_the_rebalance_timeout() {
    let (mut g, gen) = stable(&["a", "b", "c"]);
    g.leave("a", None, Instant::now()).expect("ok");
    assert_eq!(g.state, ClassicState::PreparingRebalance);
    let mut wait_b = later(g.join(req("b", &["range"]), Instant::now(), || unreachable!()));
    // c keeps heartbeating (its session stays alive) but never joins again.
    let step = Duration::from_secs(5);
    let mut waited = Duration::ZERO;
    while waited + step < REBALANCE {
        advance(step).await;
        waited += step;
        let hb = g.heartbeat("c", None, gen, Instant::now());
        assert!(matches!(hb, Err(NodeError::RebalanceInProgress(_))));
        g.tick(Instant::now());
        assert_eq!(g.state, ClassicState::PreparingRebalance, "not yet");
    }
    advance(REBALANCE - waited).await;
    g.tick(Instant::now());
    let b = wait_b.try_recv().expect("answered").expect("ok");
    assert_eq!(
        (b.generation, b.leader.as_str(), b.members.len()),
        (gen + 1, "b", 1)
    );
    assert!(matches!(
        g.heartbeat("c", None, gen, Instant::now()),
        Err(NodeError::UnknownMember { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn an_expired_session_triggers_a_rebalance_without_the_member() {
    let (mut g, gen) = stable(&["a", "b"]);
    for _ in 0..3 {
        advance(SESSION / 2).await;
        g.heartbeat("a", None, gen, Instant::now()).expect("ok");
        g.tick(Instant::now());
    }
    assert!(!g.members.contains_key("b"), "b stopped heartbeating");
    assert_eq!(g.state, ClassicState::PreparingRebalance);
    assert!(matches!(
        g.heartbeat("a", None, gen, Instant::now()),
        Err(NodeError::RebalanceInProgress(_))
    ));
    let j = ready(g.join(req("a", &["range"]), Instant::now(), || unreachable!())).expect("ok");
    assert_eq!((j.generation, j.members.len()), (gen + 1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_never_syncs_is_dropped_after_the_rebalance_timeout() {
    let (mut g, gen) = stable(&["a"]);
    let b = member_id(&mut g, "b");
    let mut wb = later(g.join(req(&b, &["range"]), Instant::now(), || unreachable!()));
    ready(g.join(req("a", &["range"]), Instant::now(), || unreachable!())).expect("ok");
    let next = gen + 1;
    assert_eq!(wb.try_recv().expect("answered").expect("ok").leader, "a");
    let mut sync_b = later(g.sync("b", None, next, Vec::new(), Instant::now()));
    // a heartbeats (allowed while the group completes) but never syncs.
    for _ in 0..5 {
        advance(REBALANCE / 6).await;
        g.heartbeat("a", None, next, Instant::now()).expect("ok");
        g.tick(Instant::now());
    }
    assert_eq!(g.state, ClassicState::CompletingRebalance, "not yet");
    advance(REBALANCE / 6).await;
    g.tick(Instant::now());
    assert!(matches!(
        sync_b.try_recv().expect("answered"),
        Err(NodeError::RebalanceInProgress(_))
    ));
    assert!(!g.members.contains_key("a"), "the leader never synced");
    assert_eq!(g.state, ClassicState::PreparingRebalance);
    let j = ready(g.join(req("b", &["range"]), Instant::now(), || unreachable!())).expect("ok");
    assert_eq!((j.generation, j.leader.as_str()), (next + 1, "b"));
}

#[tokio::test(start_paused = true)]
async fn a_static_member_returning_unchanged_keeps_its_assignment_and_fences_the_old_id() {
    let mut g = ClassicGroup::new("g", "consumer");
    let mut r = req("", &["range"]);
    r.instance_id = Some("i1".into());
    r.require_known_member_id = false;
    let j = ready(g.join(r.clone(), Instant::now(), || "old".into())).expect("ok");
    assert_eq!(
        j.member_id, "old",
        "static members need no MEMBER_ID_REQUIRED"
    );
    ready(g.sync(
        "old",
        Some("i1"),
        1,
        vec![("old".into(), assignment("A"))],
        Instant::now(),
    ))
    .expect("ok");
    let j = ready(g.join(r.clone(), Instant::now(), || "new".into())).expect("ok");
    assert_eq!(
        (j.member_id.as_str(), j.generation),
        ("new", 1),
        "no rebalance"
    );
    assert_eq!(
        (j.leader.as_str(), j.members.len()),
        ("new", 1),
        "still the leader"
    );
    assert_eq!(g.state, ClassicState::Stable);
    let s = ready(g.sync("new", Some("i1"), 1, Vec::new(), Instant::now())).expect("ok");
    assert_eq!(s.assignment, assignment("A"));
    assert!(matches!(
        g.heartbeat("old", Some("i1"), 1, Instant::now()),
        Err(NodeError::FencedInstanceId(_))
    ));
    // Changed metadata: a rebalance.
    r.protocols = vec![("roundrobin".into(), Bytes::new())];
    let j = ready(g.join(r, Instant::now(), || "newer".into())).expect("ok");
    assert_eq!((j.member_id.as_str(), j.generation), ("newer", 2));
    // Leaving by instance id alone.
    g.leave("", Some("i1"), Instant::now()).expect("ok");
    assert_eq!(g.state, ClassicState::Empty);
}

#[tokio::test(start_paused = true)]
async fn protocols_are_voted_and_inconsistent_joins_refused() {
    let (mut g, _) = stable(&["a"]);
    let b = member_id(&mut g, "b");
    let both = |first: &str, second: &str| req("", &[first, second]);
    let mut rb = both("roundrobin", "range");
    rb.member_id = b;
    let mut wb = later(g.join(rb, Instant::now(), || unreachable!()));
    let c = member_id(&mut g, "c");
    let mut rc = both("roundrobin", "range");
    rc.member_id = c;
    let mut wc = later(g.join(rc, Instant::now(), || unreachable!()));
    let mut ra = both("range", "roundrobin");
    ra.member_id = "a".into();
    let j = ready(g.join(ra, Instant::now(), || unreachable!()));
    assert_eq!(j.expect("ok").protocol, "roundrobin", "two votes to one");
    assert_eq!(
        wb.try_recv().expect("answered").expect("ok").protocol,
        "roundrobin"
    );
    wc.try_recv().expect("answered").expect("ok");
    let d = ready(g.join(req("", &["sticky"]), Instant::now(), || "d".into()));
    assert!(matches!(
        d,
        Err(NodeError::InconsistentGroupProtocol { .. })
    ));
    let mut other = req("", &["roundrobin"]);
    other.protocol_type = "connect".into();
    let e = ready(g.join(other, Instant::now(), || "e".into()));
    assert!(matches!(
        e,
        Err(NodeError::InconsistentGroupProtocol { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn member_ids_handed_out_expire_and_groups_are_bounded() {
    let mut g = ClassicGroup::new("g", "consumer");
    let id = member_id(&mut g, "m");
    advance(SESSION + Duration::from_millis(1)).await;
    g.tick(Instant::now());
    assert!(g.is_empty(), "an unused member id expires");
    let r = ready(g.join(req(&id, &["range"]), Instant::now(), || unreachable!()));
    assert!(matches!(r, Err(NodeError::UnknownMember { .. })));
    for i in 0..MEMBERS_MAX {
        member_id(&mut g, &format!("m{i}"));
    }
    let full = ready(g.join(req("", &["range"]), Instant::now(), || "x".into()));
    assert!(matches!(full, Err(NodeError::GroupMaxSize { .. })));
}

#[test]
fn assignments_decode_defensively() {
    // version 1, [("t", [0, 3])], user data 2 bytes
    let mut b = vec![
        0, 1, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3,
    ];
    b.extend([0, 0, 0, 2, 9, 9]);
    assert_eq!(
        decode_assignment(&b),
        Some(vec![("t".to_string(), 0), ("t".to_string(), 3)])
    );
    assert_eq!(decode_assignment(&b[..15]), None, "truncated");
    assert_eq!(
        decode_assignment(&[0, 1, 0x7f, 0xff, 0xff, 0xff]),
        None,
        "count too large"
    );
    assert_eq!(decode_assignment(&[]), None);
    assert_eq!(
        decode_assignment(&[0, 0, 0xff, 0xff, 0xff, 0xff]),
        Some(Vec::new()),
        "null array"
    );
}
