//! Consumer groups through the group API on real nodes: membership, assignment, fencing,
//! commits across a coordinator failover, and offset reset / replay.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use skein_proto::v1 as pb;
use skein_record::BatchBuilder;
use skein_tests::process::ProcessCluster;
use skein_tests::{channel, create_topic, TestCluster};
use tonic::transport::Channel;

type Groups = pb::group_service_client::GroupServiceClient<Channel>;

/// A client of the group's coordinator, found through node `addr`.
async fn coordinator(addr: std::net::SocketAddr, group: &str) -> Groups {
    let mut any = pb::group_service_client::GroupServiceClient::new(channel(addr).await);
    let c = any
        .find_coordinator(pb::FindCoordinatorRequest {
            group: group.into(),
        })
        .await
        .expect("find coordinator")
        .into_inner();
    let addr: std::net::SocketAddr = c.client_addr.parse().expect("coordinator address");
    pb::group_service_client::GroupServiceClient::new(channel(addr).await)
}

async fn join(
    g: &mut Groups,
    group: &str,
    member: &str,
    instance: &str,
    strategy: pb::AssignmentStrategy,
) -> pb::JoinGroupResponse {
    let r = g
        .join_group(pb::JoinGroupRequest {
            group: group.into(),
            member_id: member.into(),
            group_instance_id: instance.into(),
            client_id: "test".into(),
            session_timeout_ms: 1500,
            rebalance_timeout_ms: 3000,
            topics: vec!["t".into()],
            strategy: strategy as i32,
        })
        .await
        .expect("join")
        .into_inner();
    assert!(r.error.is_none(), "join error {:?}", r.error);
    r
}

async fn sync(g: &mut Groups, group: &str, member: &str, generation: u64) -> BTreeSet<u32> {
    let r = g
        .sync_group(pb::SyncGroupRequest {
            group: group.into(),
            member_id: member.into(),
            generation,
        })
        .await
        .expect("sync")
        .into_inner();
    assert!(r.error.is_none(), "sync error {:?}", r.error);
    r.assignment
        .iter()
        .flat_map(|tp| tp.partitions.iter().copied())
        .collect()
}

async fn heartbeat(g: &mut Groups, group: &str, member: &str, generation: u64) -> i32 {
    let r = g
        .heartbeat(pb::HeartbeatRequest {
            group: group.into(),
            member_id: member.into(),
            generation,
        })
        .await
        .expect("heartbeat")
        .into_inner();
    r.error.map_or(0, |e| e.code)
}

async fn commit(
    g: &mut Groups,
    group: &str,
    member: &str,
    generation: u64,
    offsets: &[(u32, u64)],
) -> i32 {
    let r = g
        .commit_offsets(pb::CommitOffsetsRequest {
            group: group.into(),
            member_id: member.into(),
            generation,
            offsets: offsets
                .iter()
                .map(|(p, o)| pb::PartitionOffset {
                    topic: "t".into(),
                    partition: *p,
                    offset: *o,
                    metadata: String::new(),
                })
                .collect(),
        })
        .await
        .expect("commit call")
        .into_inner();
    r.error.map_or(0, |e| e.code)
}

async fn committed(g: &mut Groups, group: &str) -> BTreeMap<u32, u64> {
    let r = g
        .fetch_offsets(pb::FetchOffsetsRequest {
            group: group.into(),
            partitions: vec![],
        })
        .await
        .expect("fetch offsets")
        .into_inner();
    r.offsets
        .iter()
        .filter(|o| o.committed)
        .map(|o| (o.partition, o.offset))
        .collect()
}

async fn produce_wave(addr: std::net::SocketAddr, partitions: u32, per_partition: usize, ts: i64) {
    let mut p = pb::produce_service_client::ProduceServiceClient::new(channel(addr).await);
    let parts = (0..partitions)
        .map(|partition| {
            let mut b = BatchBuilder::new(ts);
            for i in 0..per_partition {
                b.push(ts, None, Some(format!("{ts}-{i}").as_bytes()), &[]);
            }
            pb::PartitionBatches {
                topic: "t".into(),
                partition,
                batches: vec![b.finish()],
            }
        })
        .collect();
    let r = p
        .produce(pb::ProduceRequest {
            acks: 0,
            timeout_ms: 0,
            partitions: parts,
        })
        .await
        .expect("produce")
        .into_inner();
    for pr in r.partitions {
        assert!(pr.error.is_none(), "{:?}", pr.error);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_share_partitions_rebalance_on_expiry_and_stale_generations_are_fenced() {
    let c = TestCluster::start(1).await;
    create_topic(&c, 0, "t", 6, 1).await;
    let addr = c.nodes[0].client_addr();
    let group = "g1";
    let mut g = coordinator(addr, group).await;

    // Three members join concurrently; each ends with 2 partitions.
    let joins = (0..3).map(|_| {
        let mut g = g.clone();
        async move { join(&mut g, group, "", "", pb::AssignmentStrategy::Range).await }
    });
    let joined = futures_util::future::join_all(joins).await;
    let generation = joined[0].generation;
    assert!(joined.iter().all(|j| j.generation == generation));
    let mut all = BTreeSet::new();
    for j in &joined {
        let a = sync(&mut g, group, &j.member_id, generation).await;
        assert_eq!(a.len(), 2, "{a:?}");
        all.extend(a);
    }
    assert_eq!(all, (0..6).collect());

    // A commit with a stale generation is rejected; with the current one it is accepted.
    let m0 = joined[0].member_id.clone();
    assert_eq!(
        commit(&mut g, group, &m0, generation - 1, &[(0, 5)]).await,
        pb::ErrorCode::IllegalGeneration as i32
    );
    assert_eq!(
        commit(&mut g, group, "nobody", generation, &[(0, 5)]).await,
        pb::ErrorCode::UnknownMemberId as i32
    );
    assert_eq!(commit(&mut g, group, &m0, generation, &[(0, 5)]).await, 0);
    // Committed offsets never go backwards through commits.
    assert_eq!(commit(&mut g, group, &m0, generation, &[(0, 3)]).await, 0);
    assert_eq!(committed(&mut g, group).await.get(&0), Some(&5));

    // Member 2 stops heartbeating; the others see a rebalance, join again and share its
    // partitions, within the session timeout (plus a heartbeat interval).
    let survivors = [joined[0].member_id.clone(), joined[1].member_id.clone()];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let codes = [
            heartbeat(&mut g, group, &survivors[0], generation).await,
            heartbeat(&mut g, group, &survivors[1], generation).await,
        ];
        if codes
            .iter()
            .all(|c| *c == pb::ErrorCode::RebalanceInProgress as i32)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no rebalance after member expiry: {codes:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rejoin = survivors.iter().map(|m| {
        let mut g = g.clone();
        let m = m.clone();
        async move { join(&mut g, group, &m, "", pb::AssignmentStrategy::Range).await }
    });
    let rejoined = futures_util::future::join_all(rejoin).await;
    let gen2 = rejoined[0].generation;
    assert!(gen2 > generation);
    let mut all = BTreeSet::new();
    for m in &survivors {
        let a = sync(&mut g, group, m, gen2).await;
        assert_eq!(a.len(), 3);
        all.extend(a);
    }
    assert_eq!(all, (0..6).collect());
    // The old generation is now fenced.
    assert_eq!(
        commit(&mut g, group, &survivors[0], generation, &[(1, 1)]).await,
        pb::ErrorCode::IllegalGeneration as i32
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cooperative_sticky_join_moves_only_the_partitions_the_joiner_takes() {
    let c = TestCluster::start(1).await;
    create_topic(&c, 0, "t", 6, 1).await;
    let addr = c.nodes[0].client_addr();
    let group = "sticky";
    let mut g = coordinator(addr, group).await;
    let s = pb::AssignmentStrategy::CooperativeSticky;
    let first = futures_util::future::join_all((0..2).map(|_| {
        let mut g = g.clone();
        async move { join(&mut g, group, "", "", s).await }
    }))
    .await;
    let gen1 = first[0].generation;
    let mut before = BTreeMap::new();
    for j in &first {
        before.insert(
            j.member_id.clone(),
            sync(&mut g, group, &j.member_id, gen1).await,
        );
    }
    // A third member joins; the others are told to rebalance and join again.
    let mut g3 = g.clone();
    let third = tokio::spawn(async move { join(&mut g3, group, "", "", s).await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while heartbeat(&mut g, group, &first[0].member_id, gen1).await
        != pb::ErrorCode::RebalanceInProgress as i32
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no rebalance signalled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let again = futures_util::future::join_all(first.iter().map(|j| {
        let mut g = g.clone();
        let m = j.member_id.clone();
        async move { join(&mut g, group, &m, "", s).await }
    }))
    .await;
    let third = third.await.expect("join task");
    let gen2 = third.generation;
    assert_eq!(again[0].generation, gen2);
    let mut moved = 0;
    for j in &first {
        let after = sync(&mut g, group, &j.member_id, gen2).await;
        assert_eq!(after.len(), 2);
        assert!(
            after.is_subset(&before[&j.member_id]),
            "{} gained partitions",
            j.member_id
        );
        moved += before[&j.member_id].len() - after.len();
    }
    let taken = sync(&mut g, group, &third.member_id, gen2).await;
    assert_eq!(taken.len(), moved);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reset_to_a_datetime_between_two_waves_replays_exactly_the_second_wave() {
    let c = TestCluster::start(1).await;
    create_topic(&c, 0, "t", 2, 1).await;
    let addr = c.nodes[0].client_addr();
    produce_wave(addr, 2, 10, 1_000_000).await; // offsets 0..10 in each partition
    produce_wave(addr, 2, 5, 2_000_000).await; // offsets 10..15
    let group = "replay";
    let mut g = coordinator(addr, group).await;
    // A consumer that read everything commits the end.
    let j = join(&mut g, group, "", "", pb::AssignmentStrategy::Range).await;
    assert_eq!(
        commit(
            &mut g,
            group,
            &j.member_id,
            j.generation,
            &[(0, 15), (1, 15)]
        )
        .await,
        0
    );

    let reset = |strategy: pb::ResetStrategy, value: i64, partitions: Vec<u32>, execute: bool| {
        pb::ResetOffsetsRequest {
            group: group.into(),
            partitions: vec![pb::TopicPartitions {
                topic: "t".into(),
                partitions,
            }],
            strategy: strategy as i32,
            value,
            execute,
        }
    };
    // Refused while the group has a member.
    let r = g
        .reset_offsets(reset(pb::ResetStrategy::ToEarliest, 0, vec![], true))
        .await
        .expect("reset")
        .into_inner();
    assert_eq!(
        r.error.map(|e| e.code),
        Some(pb::ErrorCode::GroupNotEmpty as i32)
    );
    g.leave_group(pb::LeaveGroupRequest {
        group: group.into(),
        member_id: j.member_id.clone(),
    })
    .await
    .expect("leave");

    // Dry run: a plan, nothing changed.
    let r = g
        .reset_offsets(reset(
            pb::ResetStrategy::ToDatetime,
            1_500_000,
            vec![],
            false,
        ))
        .await
        .expect("reset")
        .into_inner();
    assert!(r.error.is_none(), "{:?}", r.error);
    assert!(!r.executed);
    assert!(r
        .plan
        .iter()
        .all(|p| p.current_offset == 15 && p.new_offset == 10 && !p.clamped));
    assert_eq!(
        committed(&mut g, group).await,
        BTreeMap::from([(0, 15), (1, 15)])
    );
    // Execute: the second wave (offsets 10..15) is what the group reads next.
    let r = g
        .reset_offsets(reset(
            pb::ResetStrategy::ToDatetime,
            1_500_000,
            vec![],
            true,
        ))
        .await
        .expect("reset")
        .into_inner();
    assert!(r.executed);
    assert_eq!(
        committed(&mut g, group).await,
        BTreeMap::from([(0, 10), (1, 10)])
    );
    // Shift by -3 on partition 1 only, to the earliest, and clamping past the end.
    g.reset_offsets(reset(pb::ResetStrategy::ShiftBy, -3, vec![1], true))
        .await
        .expect("reset");
    assert_eq!(
        committed(&mut g, group).await,
        BTreeMap::from([(0, 10), (1, 7)])
    );
    let r = g
        .reset_offsets(reset(pb::ResetStrategy::ToOffset, 99, vec![0], true))
        .await
        .expect("reset")
        .into_inner();
    assert!(
        r.plan[0].clamped && r.plan[0].new_offset == 15,
        "{:?}",
        r.plan
    );
    // By duration: everything was produced "long ago" (1970), so a day back is the end.
    let r = g
        .reset_offsets(reset(
            pb::ResetStrategy::ByDuration,
            86_400_000,
            vec![],
            false,
        ))
        .await
        .expect("reset")
        .into_inner();
    assert!(r.plan.iter().all(|p| p.new_offset == 15), "{:?}", r.plan);
    g.reset_offsets(reset(pb::ResetStrategy::ToEarliest, 0, vec![], true))
        .await
        .expect("reset");
    assert_eq!(
        committed(&mut g, group).await,
        BTreeMap::from([(0, 0), (1, 0)])
    );

    // Describe and list show the group with its lag; delete works once empty.
    let d = g
        .describe_group(pb::DescribeGroupRequest {
            group: group.into(),
        })
        .await
        .expect("describe")
        .into_inner();
    assert!(d.error.is_none(), "{:?}", d.error);
    assert_eq!(d.state, "Empty");
    assert!(d
        .partitions
        .iter()
        .all(|p| p.lag == 15 && p.end_offset == 15));
    let l = g
        .list_groups(pb::ListGroupsRequest {})
        .await
        .expect("list")
        .into_inner();
    assert!(l.groups.iter().any(|x| x.group == group));
    let r = g
        .delete_group(pb::DeleteGroupRequest {
            group: group.into(),
        })
        .await
        .expect("delete")
        .into_inner();
    assert!(r.error.is_none(), "{:?}", r.error);
    assert!(committed(&mut g, group).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commits_survive_the_coordinator_being_killed() {
    let mut c = ProcessCluster::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_skein-node-under-test")),
        3,
    )
    .await;
    let mut m =
        pb::metadata_service_client::MetadataServiceClient::new(channel(c.nodes[0].client).await);
    m.create_topic(pb::CreateTopicRequest {
        name: "t".into(),
        partitions: 3,
        replication_factor: 3,
        config: Default::default(),
    })
    .await
    .expect("create");
    let group = "failover";
    let mut any =
        pb::group_service_client::GroupServiceClient::new(channel(c.nodes[0].client).await);
    let coord = any
        .find_coordinator(pb::FindCoordinatorRequest {
            group: group.into(),
        })
        .await
        .expect("find")
        .into_inner();
    let mut g = coordinator(c.nodes[0].client, group).await;
    let j = join(&mut g, group, "", "", pb::AssignmentStrategy::Range).await;
    for o in 1..=20u64 {
        assert_eq!(
            commit(
                &mut g,
                group,
                &j.member_id,
                j.generation,
                &[(0, o), (1, o * 2)]
            )
            .await,
            0
        );
    }
    c.kill((coord.node_id - 1) as usize);

    // A new coordinator takes over with every acknowledged commit; members join again.
    let survivor = c
        .nodes
        .iter()
        .find(|n| n.id != coord.node_id)
        .expect("a survivor")
        .client;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut g2 = loop {
        let mut any = pb::group_service_client::GroupServiceClient::new(channel(survivor).await);
        if let Ok(r) = any
            .find_coordinator(pb::FindCoordinatorRequest {
                group: group.into(),
            })
            .await
        {
            let r = r.into_inner();
            if r.node_id != coord.node_id {
                break pb::group_service_client::GroupServiceClient::new(
                    channel(r.client_addr.parse().expect("addr")).await,
                );
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no new coordinator");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let got = loop {
        match g2
            .fetch_offsets(pb::FetchOffsetsRequest {
                group: group.into(),
                partitions: vec![],
            })
            .await
        {
            Ok(r) => break r.into_inner(),
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("fetch offsets after failover: {e}"),
        }
    };
    let got: BTreeMap<u32, u64> = got
        .offsets
        .iter()
        .map(|o| (o.partition, o.offset))
        .collect();
    assert_eq!(got, BTreeMap::from([(0, 20), (1, 40)]));
    let j2 = join(&mut g2, group, "", "", pb::AssignmentStrategy::Range).await;
    assert_eq!(
        commit(&mut g2, group, &j2.member_id, j2.generation, &[(0, 21)]).await,
        0
    );
    assert_eq!(committed(&mut g2, group).await.get(&0), Some(&21));
    let _ = Bytes::new();
}
