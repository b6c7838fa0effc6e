//! Rendering: aligned tables for people, JSON for scripts.

use serde_json::{json, Value};
use skein_client::{
    ClusterDescription, ConsumerRecord, GroupDescription, GroupListing, NodeDescription,
    PartitionDescription, ResetPlan, TopicDescription,
};

use crate::parse::format_datetime_ms;

/// Renders rows under headers as columns separated by two spaces (no trailing spaces).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            l.push_str(c);
            if i + 1 < cells.len() {
                let pad = widths[i].saturating_sub(c.chars().count());
                l.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

fn ids(v: &[u64]) -> String {
    v.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

fn leader(p: &PartitionDescription) -> String {
    p.leader
        .map_or_else(|| "none".to_string(), |l| l.to_string())
}

/// `topic list` as a table.
pub fn topics_table(topics: &[TopicDescription]) -> String {
    let rows: Vec<Vec<String>> = topics
        .iter()
        .map(|t| {
            let without_leader = t.partitions.iter().filter(|p| p.leader.is_none()).count();
            vec![
                t.name.clone(),
                t.partitions.len().to_string(),
                t.replication_factor.to_string(),
                if without_leader == 0 {
                    "ok".to_string()
                } else {
                    format!("{without_leader} without leader")
                },
            ]
        })
        .collect();
    table(&["TOPIC", "PARTITIONS", "REPLICATION", "STATUS"], &rows)
}

/// A topic as JSON.
pub fn topic_json(t: &TopicDescription) -> Value {
    json!({
        "name": t.name,
        "replication_factor": t.replication_factor,
        "config": t.config,
        "partitions": t.partitions.iter().map(|p| json!({
            "partition": p.partition,
            "leader": p.leader,
            "replicas": p.replicas,
            "in_sync": p.in_sync,
            "leader_term": p.leader_term,
        })).collect::<Vec<_>>(),
    })
}

/// `topic describe` as text: a summary line, the config, and a partition table.
pub fn topic_describe_text(t: &TopicDescription) -> String {
    let mut out = format!(
        "Topic: {}  partitions: {}  replication factor: {}\n",
        t.name,
        t.partitions.len(),
        t.replication_factor
    );
    if !t.config.is_empty() {
        let cfg: Vec<String> = t.config.iter().map(|(k, v)| format!("{k}={v}")).collect();
        out.push_str(&format!("Config: {}\n", cfg.join(", ")));
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = t
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.partition.to_string(),
                leader(p),
                ids(&p.replicas),
                ids(&p.in_sync),
            ]
        })
        .collect();
    out.push_str(&table(
        &["PARTITION", "LEADER", "REPLICAS", "IN-SYNC"],
        &rows,
    ));
    out
}

/// `cluster status` as text: nodes, then every partition's leader and replicas.
pub fn cluster_status_text(cluster: &ClusterDescription, topics: &[TopicDescription]) -> String {
    let mut out = format!(
        "Cluster: {}  controller: {}  answered by node {}\n\n",
        if cluster.cluster_id.is_empty() {
            "-"
        } else {
            &cluster.cluster_id
        },
        cluster.controller_id.map_or_else(
            || "none (no metadata leader)".to_string(),
            |c| format!("node {c}")
        ),
        cluster.answered_by
    );
    let rows: Vec<Vec<String>> = cluster
        .nodes
        .iter()
        .map(|n| node_row(n, cluster.controller_id, topics))
        .collect();
    out.push_str(&table(
        &[
            "NODE",
            "CLIENT ADDRESS",
            "PEER ADDRESS",
            "HEALTH",
            "ROLE",
            "LEADERS",
        ],
        &rows,
    ));
    let mut prow = Vec::new();
    for t in topics {
        for p in &t.partitions {
            let lagging = p.replicas.iter().filter(|r| !p.in_sync.contains(r)).count();
            prow.push(vec![
                t.name.clone(),
                p.partition.to_string(),
                leader(p),
                ids(&p.replicas),
                ids(&p.in_sync),
                if p.leader.is_none() {
                    "no leader".to_string()
                } else if lagging > 0 {
                    format!("{lagging} replica(s) behind")
                } else {
                    "ok".to_string()
                },
            ]);
        }
    }
    out.push('\n');
    if prow.is_empty() {
        out.push_str("No topics yet: create one with `skein topic create NAME`.\n");
    } else {
        out.push_str(&table(
            &[
                "TOPIC",
                "PARTITION",
                "LEADER",
                "REPLICAS",
                "IN-SYNC",
                "STATUS",
            ],
            &prow,
        ));
    }
    out
}

fn node_row(
    n: &NodeDescription,
    controller: Option<u64>,
    topics: &[TopicDescription],
) -> Vec<String> {
    let leaders = topics
        .iter()
        .flat_map(|t| &t.partitions)
        .filter(|p| p.leader == Some(n.node_id))
        .count();
    vec![
        n.node_id.to_string(),
        n.client_addr.clone(),
        if n.peer_addr.is_empty() {
            "-".to_string()
        } else {
            n.peer_addr.clone()
        },
        if n.ready { "ready" } else { "not ready" }.to_string(),
        if controller == Some(n.node_id) {
            "controller"
        } else {
            "-"
        }
        .to_string(),
        leaders.to_string(),
    ]
}

/// `cluster status` as JSON.
pub fn cluster_status_json(cluster: &ClusterDescription, topics: &[TopicDescription]) -> Value {
    json!({
        "cluster_id": cluster.cluster_id,
        "controller_id": cluster.controller_id,
        "answered_by": cluster.answered_by,
        "nodes": cluster.nodes.iter().map(|n| json!({
            "node_id": n.node_id,
            "client_addr": n.client_addr,
            "peer_addr": n.peer_addr,
            "ready": n.ready,
            "controller": cluster.controller_id == Some(n.node_id),
        })).collect::<Vec<_>>(),
        "topics": topics.iter().map(topic_json).collect::<Vec<_>>(),
    })
}

/// `group list` as a table.
pub fn groups_table(groups: &[GroupListing]) -> String {
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            vec![
                g.group.clone(),
                g.state.clone(),
                g.members.to_string(),
                g.coordinator.to_string(),
            ]
        })
        .collect();
    table(&["GROUP", "STATE", "MEMBERS", "COORDINATOR"], &rows)
}

/// `group list` as JSON.
pub fn groups_json(groups: &[GroupListing]) -> Value {
    Value::Array(
        groups
            .iter()
            .map(|g| {
                json!({
                    "group": g.group,
                    "state": g.state,
                    "members": g.members,
                    "coordinator": g.coordinator,
                })
            })
            .collect(),
    )
}

fn or_dash(s: Option<&str>) -> String {
    s.filter(|s| !s.is_empty()).unwrap_or("-").to_string()
}

/// `group describe` as text: a summary, the members, and lag per partition.
pub fn group_describe_text(d: &GroupDescription) -> String {
    let mut out = format!(
        "Group: {}  state: {}  generation: {}  strategy: {}  coordinator: node {}\n",
        d.group, d.state, d.generation, d.strategy, d.coordinator
    );
    out.push_str(&format!(
        "Members: {}  total lag: {}\n\n",
        d.members.len(),
        d.total_lag()
    ));
    if !d.members.is_empty() {
        let rows: Vec<Vec<String>> = d
            .members
            .iter()
            .map(|m| {
                vec![
                    m.member_id.clone(),
                    or_dash(m.group_instance_id.as_deref()),
                    or_dash(Some(&m.client_id)),
                    if m.assignment.is_empty() {
                        "-".to_string()
                    } else {
                        m.assignment
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(",")
                    },
                ]
            })
            .collect();
        out.push_str(&table(
            &["MEMBER", "INSTANCE", "CLIENT", "ASSIGNMENT"],
            &rows,
        ));
        out.push('\n');
    }
    if d.partitions.is_empty() {
        out.push_str("No committed offsets or assigned partitions yet.\n");
        return out;
    }
    let rows: Vec<Vec<String>> = d
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.tp.topic.clone(),
                p.tp.partition.to_string(),
                p.committed_offset
                    .map_or_else(|| "-".to_string(), |o| o.to_string()),
                p.end_offset.to_string(),
                p.lag.to_string(),
                or_dash(p.member_id.as_deref()),
            ]
        })
        .collect();
    out.push_str(&table(
        &["TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "MEMBER"],
        &rows,
    ));
    out
}

/// `group describe` as JSON.
pub fn group_json(d: &GroupDescription) -> Value {
    json!({
        "group": d.group,
        "state": d.state,
        "generation": d.generation,
        "strategy": d.strategy.as_str(),
        "coordinator": d.coordinator,
        "total_lag": d.total_lag(),
        "members": d.members.iter().map(|m| json!({
            "member_id": m.member_id,
            "group_instance_id": m.group_instance_id,
            "client_id": m.client_id,
            "assignment": m.assignment.iter().map(|tp| json!({
                "topic": tp.topic,
                "partition": tp.partition,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "partitions": d.partitions.iter().map(|p| json!({
            "topic": p.tp.topic,
            "partition": p.tp.partition,
            "committed_offset": p.committed_offset,
            "end_offset": p.end_offset,
            "lag": p.lag,
            "member_id": p.member_id,
        })).collect::<Vec<_>>(),
    })
}

/// `group reset` as text: the plan (current -> new per partition, clamped ones marked) and
/// whether it was applied.
pub fn reset_plan_text(plan: &ResetPlan) -> String {
    let rows: Vec<Vec<String>> = plan
        .entries
        .iter()
        .map(|e| {
            vec![
                e.tp.topic.clone(),
                e.tp.partition.to_string(),
                e.current_offset
                    .map_or_else(|| "-".to_string(), |o| o.to_string()),
                "->".to_string(),
                e.new_offset.to_string(),
                if e.clamped {
                    format!(
                        "clamped from {} into [{}, {}]",
                        e.requested_offset, e.log_start_offset, e.high_watermark
                    )
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    let mut out = table(&["TOPIC", "PARTITION", "CURRENT", "", "NEW", "NOTE"], &rows);
    let clamped = plan.entries.iter().filter(|e| e.clamped).count();
    if clamped > 0 {
        out.push_str(&format!(
            "\n{clamped} partition(s) clamped into [log start, end of log].\n"
        ));
    }
    out.push('\n');
    if plan.executed {
        out.push_str(&format!(
            "Offsets of group {} reset ({} partitions).\n",
            plan.group,
            plan.entries.len()
        ));
    } else {
        out.push_str(&format!(
            "Dry run: nothing changed. Run again with --execute to reset group {}.\n",
            plan.group
        ));
    }
    out
}

/// `group reset` as JSON.
pub fn reset_plan_json(plan: &ResetPlan) -> Value {
    json!({
        "group": plan.group,
        "executed": plan.executed,
        "dry_run": !plan.executed,
        "partitions": plan.entries.iter().map(|e| json!({
            "topic": e.tp.topic,
            "partition": e.tp.partition,
            "current_offset": e.current_offset,
            "requested_offset": e.requested_offset,
            "new_offset": e.new_offset,
            "clamped": e.clamped,
            "log_start_offset": e.log_start_offset,
            "high_watermark": e.high_watermark,
        })).collect::<Vec<_>>(),
    })
}

/// Bytes as JSON: a string when they are UTF-8, else `{"base64": ".."}`; null stays null.
pub fn bytes_json(b: Option<&[u8]>) -> Value {
    match b {
        None => Value::Null,
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => Value::String(s.to_string()),
            Err(_) => json!({ "base64": base64(b) }),
        },
    }
}

/// One consumed record as a JSON line.
pub fn record_json(r: &ConsumerRecord) -> Value {
    json!({
        "topic": &*r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "timestamp": r.timestamp,
        "time": format_datetime_ms(r.timestamp),
        "key": bytes_json(r.key.as_deref()),
        "value": bytes_json(r.value.as_deref()),
        "headers": r.headers.iter().map(|h| json!({
            "key": h.key,
            "value": bytes_json(h.value.as_deref()),
        })).collect::<Vec<_>>(),
    })
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use skein_client::Header;
    use std::collections::BTreeMap;

    fn topic() -> TopicDescription {
        TopicDescription {
            name: "orders".into(),
            partitions: vec![
                PartitionDescription {
                    partition: 0,
                    leader: Some(1),
                    replicas: vec![1, 2, 3],
                    in_sync: vec![1, 2, 3],
                    leader_term: 4,
                },
                PartitionDescription {
                    partition: 1,
                    leader: None,
                    replicas: vec![2, 3, 1],
                    in_sync: vec![2],
                    leader_term: 0,
                },
            ],
            replication_factor: 3,
            config: BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]),
        }
    }

    #[test]
    fn tables_align_columns_without_trailing_spaces() {
        let t = table(
            &["A", "LONG HEADER", "C"],
            &[
                vec!["xxxx".into(), "y".into(), "z".into()],
                vec!["1".into(), "2".into(), "".into()],
            ],
        );
        assert_eq!(t, "A     LONG HEADER  C\nxxxx  y            z\n1     2\n");
    }

    #[test]
    fn topic_views() {
        let list = topics_table(&[topic()]);
        assert!(
            list.starts_with("TOPIC   PARTITIONS  REPLICATION  STATUS\n"),
            "{list}"
        );
        assert!(
            list.contains("orders  2           3            1 without leader"),
            "{list}"
        );
        let d = topic_describe_text(&topic());
        assert!(
            d.contains("Topic: orders  partitions: 2  replication factor: 3"),
            "{d}"
        );
        assert!(d.contains("Config: retention.ms=1000"), "{d}");
        assert!(d.contains("1          none    2,3,1     2"), "{d}");
        let j = topic_json(&topic());
        assert_eq!(j["partitions"][1]["leader"], Value::Null);
        assert_eq!(j["partitions"][0]["replicas"], json!([1, 2, 3]));
        assert_eq!(j["config"]["retention.ms"], "1000");
    }

    #[test]
    fn cluster_views() {
        let c = ClusterDescription {
            cluster_id: "c1".into(),
            controller_id: Some(1),
            answered_by: 2,
            nodes: vec![
                NodeDescription {
                    node_id: 1,
                    client_addr: "127.0.0.1:9650".into(),
                    peer_addr: "127.0.0.1:9651".into(),
                    ready: true,
                },
                NodeDescription {
                    node_id: 2,
                    client_addr: "127.0.0.1:19650".into(),
                    peer_addr: String::new(),
                    ready: false,
                },
            ],
        };
        let s = cluster_status_text(&c, &[topic()]);
        assert!(s.contains("controller: node 1"), "{s}");
        assert!(
            s.contains("1     127.0.0.1:9650   127.0.0.1:9651  ready      controller  1"),
            "{s}"
        );
        assert!(s.contains("not ready"), "{s}");
        assert!(s.contains("orders  1          none"), "{s}");
        assert!(s.contains("no leader"), "{s}");
        let empty = cluster_status_text(&c, &[]);
        assert!(empty.contains("skein topic create"), "{empty}");
        let j = cluster_status_json(&c, &[topic()]);
        assert_eq!(j["nodes"][0]["controller"], true);
        assert_eq!(j["nodes"][1]["ready"], false);
        assert_eq!(j["topics"][0]["name"], "orders");
    }

    #[test]
    fn records_as_json_lines() {
        let r = ConsumerRecord {
            topic: "t".into(),
            partition: 3,
            offset: 42,
            timestamp: 1_714_564_800_250,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(&[0xff, 0x00, 0x61])),
            headers: vec![Header {
                key: "trace".into(),
                value: None,
            }],
        };
        let j = record_json(&r);
        assert_eq!(j["offset"], 42);
        assert_eq!(j["key"], "k");
        assert_eq!(j["value"], json!({"base64": "/wBh"}));
        assert_eq!(j["time"], "2024-05-01T12:00:00.250Z");
        assert_eq!(j["headers"][0]["value"], Value::Null);
        assert!(!j.to_string().contains('\n'));
    }

    fn group() -> GroupDescription {
        use skein_client::{AssignmentStrategy, GroupMember, PartitionLag, TopicPartition};
        GroupDescription {
            group: "billing".into(),
            state: "Stable".into(),
            generation: 3,
            strategy: AssignmentStrategy::Range,
            members: vec![GroupMember {
                member_id: "member-1".into(),
                group_instance_id: None,
                client_id: "skein-cli".into(),
                assignment: vec![
                    TopicPartition::new("orders", 0),
                    TopicPartition::new("orders", 1),
                ],
            }],
            partitions: vec![
                PartitionLag {
                    tp: TopicPartition::new("orders", 0),
                    committed_offset: Some(5),
                    end_offset: 8,
                    lag: 3,
                    member_id: Some("member-1".into()),
                },
                PartitionLag {
                    tp: TopicPartition::new("orders", 1),
                    committed_offset: None,
                    end_offset: 2,
                    lag: 2,
                    member_id: None,
                },
            ],
            coordinator: 1,
        }
    }

    #[test]
    fn group_views() {
        let t = group_describe_text(&group());
        assert!(
            t.contains("Group: billing  state: Stable  generation: 3  strategy: range"),
            "{t}"
        );
        assert!(t.contains("total lag: 5"), "{t}");
        assert!(
            t.contains("member-1  -         skein-cli  orders:0,orders:1"),
            "{t}"
        );
        assert!(
            t.contains("TOPIC   PARTITION  COMMITTED  END  LAG  MEMBER"),
            "{t}"
        );
        assert!(
            t.contains("orders  0          5          8    3    member-1"),
            "{t}"
        );
        assert!(
            t.contains("orders  1          -          2    2    -"),
            "{t}"
        );
        let j = group_json(&group());
        assert_eq!(j["partitions"][1]["committed_offset"], Value::Null);
        assert_eq!(j["members"][0]["assignment"][1]["partition"], 1);
        assert_eq!(j["total_lag"], 5);
        let list = groups_table(&[GroupListing {
            group: "billing".into(),
            state: "Empty".into(),
            members: 0,
            coordinator: 2,
        }]);
        assert_eq!(
            list,
            "GROUP    STATE  MEMBERS  COORDINATOR\nbilling  Empty  0        2\n"
        );
    }

    #[test]
    fn reset_plans_mark_clamping_and_dry_runs() {
        use skein_client::{ResetPlanEntry, TopicPartition};
        let plan = ResetPlan {
            group: "billing".into(),
            executed: false,
            entries: vec![
                ResetPlanEntry {
                    tp: TopicPartition::new("orders", 0),
                    current_offset: Some(5),
                    requested_offset: -5,
                    new_offset: 0,
                    clamped: true,
                    log_start_offset: 0,
                    high_watermark: 8,
                },
                ResetPlanEntry {
                    tp: TopicPartition::new("orders", 1),
                    current_offset: None,
                    requested_offset: 1,
                    new_offset: 1,
                    clamped: false,
                    log_start_offset: 0,
                    high_watermark: 2,
                },
            ],
        };
        let t = reset_plan_text(&plan);
        assert!(
            t.contains("orders  0          5        ->  0    clamped from -5 into [0, 8]"),
            "{t}"
        );
        assert!(t.contains("orders  1          -        ->  1\n"), "{t}");
        assert!(
            t.contains("Dry run: nothing changed. Run again with --execute"),
            "{t}"
        );
        assert!(t.contains("1 partition(s) clamped"), "{t}");
        let j = reset_plan_json(&plan);
        assert_eq!(j["dry_run"], true);
        assert_eq!(j["partitions"][0]["clamped"], true);
        assert_eq!(j["partitions"][1]["current_offset"], Value::Null);
        let done = reset_plan_text(&ResetPlan {
            executed: true,
            ..plan
        });
        assert!(
            done.contains("Offsets of group billing reset (2 partitions)."),
            "{done}"
        );
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }
}
