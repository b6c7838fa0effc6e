//! Rendering: aligned tables for people, JSON for scripts.

use serde_json::{json, Value};
use skein_client::{
    ClusterDescription, ConsumerRecord, NodeDescription, PartitionDescription, TopicDescription,
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
        "topic": r.topic,
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
