//! The group consumer and the group admin calls against `FakeBroker`'s GroupService double: the
//! join/sync/heartbeat/commit loop, rebalances signalled by heartbeats, cooperative-sticky
//! reassignment, NOT_COORDINATOR redirects, lost membership, static membership, and the admin
//! verbs. End-to-end tests against the real coordinator live with the broker.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use skein_client::{
    Admin, AssignmentStrategy, Client, ClientConfig, ClientError, ErrorCode, GroupConsumer,
    GroupConsumerConfig, GroupEvent, OffsetAndMetadata, OffsetReset, Producer, ProducerConfig,
    ProducerRecord, ResetStrategy, TopicPartition, TopicPartitions,
};
use support::fake_broker::FakeCluster;
use tokio::time::{timeout, Instant};

const LIMIT: Duration = Duration::from_secs(20);

fn client(brokers: &str) -> Client {
    Client::new(ClientConfig {
        retry_backoff_min: Duration::from_millis(5),
        retry_backoff_max: Duration::from_millis(50),
        request_timeout: Duration::from_secs(5),
        ..ClientConfig::new(brokers)
    })
    .expect("valid config")
}

fn config(group: &str, strategy: AssignmentStrategy) -> GroupConsumerConfig {
    let mut c = GroupConsumerConfig::new(group);
    c.session_timeout = Duration::from_secs(1);
    c.rebalance_timeout = Duration::from_secs(5);
    c.strategy = strategy;
    c.enable_auto_commit = false;
    c.auto_offset_reset = OffsetReset::Earliest;
    c.fetch.fetch_wait_max = Duration::from_millis(50);
    c
}

async fn produce(brokers: &str, topic: &str, partition: u32, values: &[&str]) {
    let producer = Producer::new(
        client(brokers),
        ProducerConfig {
            linger: Duration::from_millis(1),
            ..ProducerConfig::default()
        },
    )
    .await
    .expect("producer");
    for v in values {
        producer
            .send_and_wait(ProducerRecord::new(topic, v.to_string()).partition(partition))
            .await
            .expect("acknowledged");
    }
}

fn tps(topic: &str, ps: &[u32]) -> Vec<TopicPartition> {
    ps.iter().map(|p| TopicPartition::new(topic, *p)).collect()
}

/// Polls until an event other than empty records arrives.
async fn next_event(c: &mut GroupConsumer) -> GroupEvent {
    timeout(LIMIT, async {
        loop {
            match c.poll_event().await.expect("poll") {
                GroupEvent::Records(r) if r.is_empty() => continue,
                e => return e,
            }
        }
    })
    .await
    .expect("an event in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_joins_consumes_its_assignment_commits_and_leaves() {
    let cluster = FakeCluster::default();
    let addr = cluster.start_node(1).await;
    cluster.create_topic("t", &[1, 1]);
    produce(&addr, "t", 0, &["a", "b", "c"]).await;
    produce(&addr, "t", 1, &["d"]).await;

    let mut c = GroupConsumer::new(client(&addr), config("g", AssignmentStrategy::Range))
        .expect("consumer");
    c.subscribe(["t"]);
    assert_eq!(
        next_event(&mut c).await,
        GroupEvent::Assigned(tps("t", &[0, 1]))
    );
    assert_eq!(c.generation(), Some(1));
    assert!(c.member_id().is_some());

    let mut got = Vec::new();
    while got.len() < 4 {
        if let GroupEvent::Records(r) = next_event(&mut c).await {
            got.extend(r.into_iter().map(|r| (r.partition, r.offset)));
        }
    }
    got.sort();
    assert_eq!(got, vec![(0, 0), (0, 1), (0, 2), (1, 0)]);
    c.commit().await.expect("commit acknowledged");
    assert_eq!(
        cluster.committed("g", "t", 0),
        Some(3),
        "next record to process"
    );
    assert_eq!(cluster.committed("g", "t", 1), Some(1));
    assert_eq!(c.last_committed(&TopicPartition::new("t", 0)), Some(3));

    // Heartbeats keep the member in (session 1 s) while it does not poll.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(cluster.counters(1).heartbeats >= 2, "heartbeats sent");
    assert_eq!(cluster.members("g").len(), 1, "still a member");

    c.close().await.expect("close");
    assert!(cluster.members("g").is_empty(), "left the group");
    assert_eq!(cluster.counters(1).leaves, 1);
    assert!(c.poll_event().await.is_err(), "closed");

    // A new member starts at the committed offsets.
    produce(&addr, "t", 0, &["e"]).await;
    let mut c = GroupConsumer::new(client(&addr), config("g", AssignmentStrategy::Range))
        .expect("consumer");
    c.subscribe(["t"]);
    assert!(matches!(next_event(&mut c).await, GroupEvent::Assigned(_)));
    match next_event(&mut c).await {
        GroupEvent::Records(r) => {
            assert_eq!(r.len(), 1, "only the record after the commit");
            assert_eq!((r[0].partition, r[0].offset), (0, 3));
        }
        e => panic!("unexpected {e:?}"),
    }
    c.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_seen_by_the_heartbeat_revokes_commits_and_reassigns() {
    let cluster = FakeCluster::default();
    let addr = cluster.start_node(1).await;
    cluster.create_topic("t", &[1, 1]);
    produce(&addr, "t", 0, &["a", "b"]).await;

    let mut c = GroupConsumer::new(client(&addr), config("g", AssignmentStrategy::Range))
        .expect("consumer");
    c.subscribe(["t"]);
    assert!(matches!(next_event(&mut c).await, GroupEvent::Assigned(_)));
    let mut n = 0;
    while n < 2 {
        if let GroupEvent::Records(r) = next_event(&mut c).await {
            n += r.len();
        }
    }
    cluster.trigger_rebalance("g");
    // Eager: everything is revoked while the old generation is still current...
    assert_eq!(
        next_event(&mut c).await,
        GroupEvent::Revoked(tps("t", &[0, 1]))
    );
    assert_eq!(c.generation(), Some(1));
    // ...so a commit now is accepted.
    c.commit().await.expect("commit during the rebalance");
    assert_eq!(cluster.committed("g", "t", 0), Some(2));
    assert_eq!(
        next_event(&mut c).await,
        GroupEvent::Assigned(tps("t", &[0, 1]))
    );
    assert_eq!(c.generation(), Some(2));
    assert_eq!(cluster.generation("g"), 2);
    // Positions restart from the commit: nothing is read twice.
    produce(&addr, "t", 0, &["c"]).await;
    match next_event(&mut c).await {
        GroupEvent::Records(r) => assert_eq!(r[0].offset, 2),
        e => panic!("unexpected {e:?}"),
    }
    c.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_commit_commits_before_revocation_and_on_close() {
    let cluster = FakeCluster::default();
    let addr = cluster.start_node(1).await;
    cluster.create_topic("t", &[1]);
    produce(&addr, "t", 0, &["a", "b", "c"]).await;
    let mut cfg = config("g", AssignmentStrategy::RoundRobin);
    cfg.enable_auto_commit = true;
    cfg.auto_commit_interval = Duration::from_secs(60);
    let mut c = GroupConsumer::new(client(&addr), cfg).expect("consumer");
    c.subscribe(["t"]);
    let mut n = 0;
    while n < 3 {
        n += timeout(LIMIT, c.poll())
            .await
            .expect("in time")
            .expect("poll")
            .len();
    }
    cluster.trigger_rebalance("g");
    // `poll` carries the rebalance out by itself and commits before revoking.
    let deadline = Instant::now() + LIMIT;
    while cluster.generation("g") < 2 {
        assert!(Instant::now() < deadline, "rebalance did not complete");
        c.poll().await.expect("poll");
    }
    assert_eq!(cluster.committed("g", "t", 0), Some(3));
    produce(&addr, "t", 0, &["d"]).await;
    let mut n = 0;
    while n < 1 {
        n += timeout(LIMIT, c.poll())
            .await
            .expect("in time")
            .expect("poll")
            .len();
    }
    c.close().await.expect("close");
    assert_eq!(
        cluster.committed("g", "t", 0),
        Some(4),
        "committed on close"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_moves_only_the_partitions_a_new_member_takes() {
    let cluster = FakeCluster::default();
    let addr = cluster.start_node(1).await;
    cluster.create_topic("t", &[1, 1, 1, 1]);
    for p in 0..4 {
        produce(&addr, "t", p, &["x"]).await;
    }
    let strategy = AssignmentStrategy::CooperativeSticky;
    let mut first = GroupConsumer::new(client(&addr), config("g", strategy)).expect("consumer");
    first.subscribe(["t"]);
    assert_eq!(
        next_event(&mut first).await,
        GroupEvent::Assigned(tps("t", &[0, 1, 2, 3]))
    );
    let mut n = 0;
    while n < 4 {
        if let GroupEvent::Records(r) = next_event(&mut first).await {
            n += r.len();
        }
    }
    // Commit what was read before the second member joins. (The commit made after `Revoked`
    // below races with the second member's offset lookup: the coordinator hands the moved
    // partitions over in the same round instead of a second one, so the new owner may look
    // before the old owner's commit lands and read a record again; see docs/ARCHITECTURE.md.)
    first.commit().await.expect("commit before the rebalance");
    // The second member's join blocks until the first rejoins: run it beside.
    let addr2 = addr.clone();
    let second = tokio::spawn(async move {
        let mut c = GroupConsumer::new(client(&addr2), config("g", strategy)).expect("consumer");
        c.subscribe(["t"]);
        let e = next_event(&mut c).await;
        (c, e)
    });
    let revoked = match next_event(&mut first).await {
        GroupEvent::Revoked(r) => r,
        e => panic!("unexpected {e:?}"),
    };
    assert_eq!(revoked.len(), 2, "only the moved partitions: {revoked:?}");
    // Revoked partitions are still assigned until the next poll: their positions commit.
    first.commit().await.expect("commit");
    let (mut second, event) = timeout(LIMIT, second)
        .await
        .expect("in time")
        .expect("join");
    let GroupEvent::Assigned(taken) = event else {
        panic!("unexpected {event:?}")
    };
    assert_eq!(taken, revoked, "the new member takes exactly what moved");
    let kept: Vec<TopicPartition> = tps("t", &[0, 1, 2, 3])
        .into_iter()
        .filter(|tp| !revoked.contains(tp))
        .collect();
    // Kept partitions keep their positions: no reset, nothing read again.
    for tp in &kept {
        assert_eq!(first.position(tp), Some(1), "{tp}");
    }
    // The first member gains nothing: no Assigned event, straight to records.
    produce(&addr, "t", kept[0].partition, &["y"]).await;
    match next_event(&mut first).await {
        GroupEvent::Records(r) => {
            assert_eq!(r.len(), 1);
            assert_eq!((r[0].partition, r[0].offset), (kept[0].partition, 1));
        }
        e => panic!("unexpected {e:?}"),
    }
    assert_eq!(first.assignment(), kept);
    // The second starts at the first member's commits (offset 1): nothing processed twice.
    for tp in &taken {
        assert_eq!(cluster.committed("g", &tp.topic, tp.partition), Some(1));
    }
    produce(&addr, "t", taken[0].partition, &["z"]).await;
    let second_poll = tokio::spawn(async move {
        let e = next_event(&mut second).await;
        (second, e)
    });
    // Keep the first polling (heartbeats are background, but be a good member).
    let (mut second, e) = timeout(LIMIT, second_poll)
        .await
        .expect("in time")
        .expect("poll");
    match e {
        GroupEvent::Records(r) => assert_eq!(r[0].offset, 1),
        e => panic!("unexpected {e:?}"),
    }
    second.close().await.expect("close");
    first.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_coordinator_is_followed_to_the_named_coordinator() {
    let cluster = FakeCluster::default();
    let a = cluster.start_node(1).await;
    let _b = cluster.start_node(2).await;
    cluster.create_topic("t", &[1]);
    produce(&a, "t", 0, &["a"]).await;
    cluster.set_group_coordinator(1);
    let mut c =
        GroupConsumer::new(client(&a), config("g", AssignmentStrategy::Range)).expect("consumer");
    c.subscribe(["t"]);
    assert!(matches!(next_event(&mut c).await, GroupEvent::Assigned(_)));
    // The coordinator moves (a failover); the client still talks to node 1.
    cluster.set_group_coordinator(2);
    let mut n = 0;
    while n < 1 {
        if let GroupEvent::Records(r) = next_event(&mut c).await {
            n += r.len();
        }
    }
    c.commit().await.expect("commit follows the redirect");
    assert!(cluster.counters(1).not_coordinator >= 1, "node 1 said so");
    assert_eq!(
        cluster.counters(2).commits,
        1,
        "the commit landed on node 2"
    );
    assert_eq!(cluster.committed("g", "t", 0), Some(1));
    c.close().await.expect("close");
    assert_eq!(cluster.counters(2).leaves, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_member_loses_its_partitions_and_joins_again() {
    let cluster = FakeCluster::default();
    let addr = cluster.start_node(1).await;
    cluster.create_topic("t", &[1]);
    let mut c = GroupConsumer::new(client(&addr), config("g", AssignmentStrategy::Range))
        .expect("consumer");
    c.subscribe(["t"]);
    assert!(matches!(next_event(&mut c).await, GroupEvent::Assigned(_)));
    let old = c.member_id().expect("member id");
    cluster.expire_member("g", &old);
    assert_eq!(next_event(&mut c).await, GroupEvent::Lost(tps("t", &[0])));
    assert_eq!(
        next_event(&mut c).await,
        GroupEvent::Assigned(tps("t", &[0]))
    );
    let new = c.member_id().expect("member id");
    assert_ne!(old, new, "joined again with an empty member id");
    // A commit from the stale generation is refused: here, a second member bumped it.
    c.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_member_comes_back_without_a_rebalance() {
    let cluster = FakeCluster::default();
    let addr = cluster.start_node(1).await;
    cluster.create_topic("t", &[1, 1]);
    let mut cfg = config("g", AssignmentStrategy::Range);
    cfg.group_instance_id = Some("pod-1".into());
    let mut c = GroupConsumer::new(client(&addr), cfg.clone()).expect("consumer");
    c.subscribe(["t"]);
    assert!(matches!(next_event(&mut c).await, GroupEvent::Assigned(_)));
    let id = c.member_id();
    c.close().await.expect("close");
    assert_eq!(
        cluster.counters(1).leaves,
        0,
        "static members do not leave on close"
    );
    let mut c = GroupConsumer::new(client(&addr), cfg).expect("consumer");
    c.subscribe(["t"]);
    assert_eq!(
        next_event(&mut c).await,
        GroupEvent::Assigned(tps("t", &[0, 1]))
    );
    assert_eq!(c.member_id(), id, "same member");
    assert_eq!(cluster.generation("g"), 1, "no rebalance");
    c.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_lists_describes_resets_and_deletes_groups() {
    let cluster = FakeCluster::default();
    let addr = cluster.start_node(1).await;
    cluster.create_topic("t", &[1, 1]);
    produce(&addr, "t", 0, &["a", "b", "c", "d"]).await;
    produce(&addr, "t", 1, &["e"]).await;
    let admin = Admin::new(client(&addr));

    let offsets: BTreeMap<TopicPartition, OffsetAndMetadata> =
        [(TopicPartition::new("t", 0), OffsetAndMetadata::new(1))].into();
    admin
        .commit_offsets("g", &offsets)
        .await
        .expect("commit from outside");
    let fetched = admin.fetch_offsets("g", &[]).await.expect("fetch");
    assert_eq!(fetched[&TopicPartition::new("t", 0)].offset, 1);

    let groups = admin.list_groups().await.expect("list");
    assert_eq!(groups.len(), 1);
    assert_eq!(
        (groups[0].group.as_str(), groups[0].state.as_str()),
        ("g", "Empty")
    );

    let d = admin.describe_group("g").await.expect("describe");
    assert_eq!(d.partitions.len(), 1);
    assert_eq!(
        (
            d.partitions[0].committed_offset,
            d.partitions[0].end_offset,
            d.partitions[0].lag
        ),
        (Some(1), 4, 3)
    );

    // Dry run: a plan, nothing changed.
    let plan = admin
        .reset_offsets(
            "g",
            &[TopicPartitions::all("t")],
            ResetStrategy::ShiftBy(-5),
            false,
        )
        .await
        .expect("plan");
    assert!(!plan.executed);
    assert_eq!(plan.entries.len(), 2);
    assert!(plan.entries[0].clamped, "1 - 5 is below the log start");
    assert_eq!(plan.entries[0].new_offset, 0);
    assert_eq!(plan.entries[1].current_offset, None);
    assert_eq!(cluster.committed("g", "t", 0), Some(1));
    let plan = admin
        .reset_offsets(
            "g",
            &[TopicPartitions::some("t", [0])],
            ResetStrategy::Latest,
            true,
        )
        .await
        .expect("execute");
    assert!(plan.executed);
    assert_eq!(cluster.committed("g", "t", 0), Some(4));

    // Refused while a member is active.
    let mut c = GroupConsumer::new(client(&addr), config("g", AssignmentStrategy::Range))
        .expect("consumer");
    c.subscribe(["t"]);
    assert!(matches!(next_event(&mut c).await, GroupEvent::Assigned(_)));
    let e = admin
        .reset_offsets(
            "g",
            &[TopicPartitions::all("t")],
            ResetStrategy::Earliest,
            true,
        )
        .await
        .expect_err("active group");
    assert_eq!(e.code(), Some(ErrorCode::GroupNotEmpty));
    let e = admin.delete_group("g").await.expect_err("active group");
    assert_eq!(e.code(), Some(ErrorCode::GroupNotEmpty));
    let d = admin.describe_group("g").await.expect("describe");
    assert_eq!(d.members.len(), 1);
    assert_eq!(d.members[0].assignment, tps("t", &[0, 1]));
    assert_eq!(d.state, "Stable");
    c.close().await.expect("close");

    admin
        .delete_group("g")
        .await
        .expect("delete an empty group");
    let e = admin.describe_group("g").await.expect_err("gone");
    assert_eq!(e.code(), Some(ErrorCode::GroupNotFound));
}

/// Polls until `n` records have arrived; returns (partition, value) pairs.
async fn records(c: &mut GroupConsumer, n: usize) -> Vec<(u32, String)> {
    let mut got = Vec::new();
    timeout(LIMIT, async {
        while got.len() < n {
            if let GroupEvent::Records(r) = c.poll_event().await.expect("poll") {
                got.extend(r.into_iter().map(|r| {
                    let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default());
                    (r.partition, v.into_owned())
                }));
            }
        }
    })
    .await
    .expect("the records in time");
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_of_partitions_where_nothing_arrived_are_committed_so_nothing_is_skipped() {
    let cluster = FakeCluster::default();
    let addr = cluster.start_node(1).await;
    cluster.create_topic("t", &[1, 1, 1, 1]);
    produce(&addr, "t", 0, &["a", "b"]).await;

    // First run: reset earliest, auto-commit; only partition 0 has records.
    let mut first = config("g", AssignmentStrategy::Range);
    first.enable_auto_commit = true;
    first.auto_commit_interval = Duration::from_secs(60);
    let mut c = GroupConsumer::new(client(&addr), first).expect("consumer");
    c.subscribe(["t"]);
    assert_eq!(
        records(&mut c, 2).await,
        vec![(0, "a".into()), (0, "b".into())]
    );
    c.close().await.expect("close commits");
    assert_eq!(cluster.committed("g", "t", 0), Some(2));
    for p in 1..4 {
        assert_eq!(
            cluster.committed("g", "t", p),
            Some(0),
            "empty partition {p}"
        );
    }

    // Meanwhile every partition gets a record; a run with reset latest (the default) reads
    // them all from the committed positions.
    for p in 0..4 {
        produce(&addr, "t", p, &[&format!("new-{p}")]).await;
    }
    let mut second = config("g", AssignmentStrategy::Range);
    second.auto_offset_reset = OffsetReset::Latest;
    let mut c = GroupConsumer::new(client(&addr), second).expect("consumer");
    c.subscribe(["t"]);
    let mut got = records(&mut c, 4).await;
    got.sort();
    let want: Vec<(u32, String)> = (0..4).map(|p| (p, format!("new-{p}"))).collect();
    assert_eq!(got, want);
    c.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_position_is_committed_once_known_without_waiting_for_the_interval() {
    let cluster = FakeCluster::default();
    let addr = cluster.start_node(1).await;
    cluster.create_topic("t", &[1, 1]);
    produce(&addr, "t", 1, &["x", "y", "z"]).await;
    let mut cfg = config("g", AssignmentStrategy::Range);
    cfg.enable_auto_commit = true;
    cfg.auto_commit_interval = Duration::from_secs(3600);
    cfg.auto_offset_reset = OffsetReset::Latest;
    let mut c = GroupConsumer::new(client(&addr), cfg).expect("consumer");
    c.subscribe(["t"]);
    let deadline = Instant::now() + LIMIT;
    while cluster.committed("g", "t", 0).is_none() || cluster.committed("g", "t", 1).is_none() {
        assert!(
            Instant::now() < deadline,
            "start positions committed in time"
        );
        c.poll_event().await.expect("poll");
    }
    assert_eq!(cluster.committed("g", "t", 0), Some(0));
    assert_eq!(cluster.committed("g", "t", 1), Some(3), "latest: the end");
    c.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_none_refuses_an_assigned_partition_without_a_commit() {
    let cluster = FakeCluster::default();
    let addr = cluster.start_node(1).await;
    cluster.create_topic("t", &[1, 1]);
    cluster.set_committed("g", "t", 0, 0);
    let mut cfg = config("g", AssignmentStrategy::Range);
    cfg.auto_offset_reset = OffsetReset::Error;
    let mut c = GroupConsumer::new(client(&addr), cfg).expect("consumer");
    c.subscribe(["t"]);
    let e = timeout(LIMIT, async {
        loop {
            if let Err(e) = c.poll_event().await {
                return e;
            }
        }
    })
    .await
    .expect("an error in time");
    assert!(matches!(e, ClientError::NoStartPosition { .. }), "{e:?}");
    assert!(
        e.to_string().contains("t:1") && !e.to_string().contains("t:0"),
        "{e}"
    );
    c.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listed_group_can_be_described_even_without_members_or_commits() {
    let cluster = FakeCluster::default();
    let addr = cluster.start_node(1).await;
    cluster.create_topic("t", &[1]);
    // A member joins and leaves without committing anything.
    let mut c = GroupConsumer::new(client(&addr), config("quiet", AssignmentStrategy::Range))
        .expect("consumer");
    c.subscribe(["t"]);
    assert!(matches!(next_event(&mut c).await, GroupEvent::Assigned(_)));
    c.close().await.expect("close");
    assert_eq!(cluster.committed("quiet", "t", 0), None);

    let admin = Admin::new(client(&addr));
    let listed = admin.list_groups().await.expect("list");
    assert!(listed
        .iter()
        .any(|g| g.group == "quiet" && g.state == "Empty"));
    let d = admin.describe_group("quiet").await.expect("described");
    assert_eq!(
        (d.state.as_str(), d.members.len(), d.partitions.len()),
        ("Empty", 0, 0)
    );
    let e = admin
        .describe_group("never-seen")
        .await
        .expect_err("unknown");
    assert_eq!(e.code(), Some(ErrorCode::GroupNotFound));
}
