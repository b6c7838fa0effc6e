//! Topic names and per-topic configuration.

use std::collections::BTreeMap;

use skein_storage::LogConfig;

use crate::config::{flush_policy, parse_duration, parse_size, NodeConfig};
use crate::error::{NodeError, Result};

/// Longest topic name (as in Kafka).
pub const TOPIC_NAME_LEN_MAX: usize = 249;

/// Checks a topic name: 1 to 249 characters of `[A-Za-z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let fail = |reason: &str| {
        Err(NodeError::InvalidTopicName {
            name: name.chars().take(300).collect(),
            reason: reason.to_owned(),
        })
    };
    if name.is_empty() {
        return fail("a topic name cannot be empty");
    }
    if name == "." || name == ".." {
        return fail("`.` and `..` are not topic names");
    }
    if name.len() > TOPIC_NAME_LEN_MAX {
        return fail("a topic name has at most 249 characters");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        let reason =
            format!("character {c:?} is not allowed: use only letters, digits, `.`, `_` and `-`");
        return fail(&reason);
    }
    Ok(())
}

/// Keys a topic's `config` map accepts.
pub const TOPIC_CONFIG_KEYS: [&str; 8] = [
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "segment.ms",
    "flush.policy",
    "flush.interval.ms",
    "flush.bytes",
    "max.batch.bytes",
];

/// Applies a topic's config overrides to the cluster's default log settings, validating them.
/// Values take plain numbers (Kafka style) or human units (`7d`, `64 MiB`); `retention.ms` and
/// `retention.bytes` accept `-1` for "no limit".
pub fn topic_log_config(
    defaults: &LogConfig,
    overrides: &BTreeMap<String, String>,
) -> Result<LogConfig> {
    let mut c = defaults.clone();
    let bad = |key: &str, reason: String| NodeError::InvalidTopicConfig {
        key: key.to_owned(),
        reason,
    };
    let mut interval = None;
    let mut bytes = None;
    let mut policy = None;
    for (k, v) in overrides {
        let v = v.trim();
        match k.as_str() {
            "retention.ms" => {
                c.retention.time = if v == "-1" {
                    None
                } else {
                    Some(parse_duration(v).map_err(|e| bad(k, e.to_string()))?)
                }
            }
            "retention.bytes" => {
                c.retention.bytes = if v == "-1" {
                    None
                } else {
                    Some(parse_size(v).map_err(|e| bad(k, e.to_string()))?)
                }
            }
            "segment.bytes" => {
                c.segment_bytes_max = parse_size(v).map_err(|e| bad(k, e.to_string()))?
            }
            "segment.ms" => {
                c.segment_age_max = Some(parse_duration(v).map_err(|e| bad(k, e.to_string()))?)
            }
            "flush.policy" => policy = Some(v.to_owned()),
            "flush.interval.ms" => {
                interval = Some(parse_duration(v).map_err(|e| bad(k, e.to_string()))?)
            }
            "flush.bytes" => bytes = Some(parse_size(v).map_err(|e| bad(k, e.to_string()))?),
            "max.batch.bytes" => {
                let b = parse_size(v).map_err(|e| bad(k, e.to_string()))?;
                c.batch_bytes_max =
                    u32::try_from(b).map_err(|_| bad(k, "must be below 4 GiB".into()))?;
            }
            other => {
                return Err(bad(
                    other,
                    format!(
                        "unknown topic setting; known: {}",
                        TOPIC_CONFIG_KEYS.join(", ")
                    ),
                ))
            }
        }
    }
    c.flush = flush_policy(policy.as_deref(), interval, bytes, c.flush)
        .map_err(|e| bad("flush.policy", e.to_string()))?;
    c.validate().map_err(|e| bad("config", e.to_string()))?;
    Ok(c)
}

/// Checks a topic's config overrides where they are set (topic creation, over gRPC or Kafka,
/// and alter-config): [`topic_log_config`] on the node's defaults, and the relations to the
/// node's other settings. A group-commit interval must stay below half of the election timeout
/// ([`crate::config::RaftTiming::check_flush`]), as for the node's default.
///
/// Readers of settings already in the metadata call [`topic_log_config`]: those were checked
/// when they were set.
pub fn check_topic_config(
    node: &NodeConfig,
    overrides: &BTreeMap<String, String>,
) -> Result<LogConfig> {
    let c = topic_log_config(&node.topic_defaults.log, overrides)?;
    node.raft
        .check_flush(&c.flush)
        .map_err(|reason| NodeError::InvalidTopicConfig {
            key: "flush.interval.ms".to_owned(),
            reason,
        })?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn topic_names() {
        for ok in ["orders", "a", "A.b_c-9", &"x".repeat(249)] {
            validate_topic_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "with space",
            "ü",
            &"x".repeat(250),
            "a\0",
        ] {
            assert!(
                matches!(
                    validate_topic_name(bad),
                    Err(NodeError::InvalidTopicName { .. })
                ),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn topic_config_overrides() {
        let d = LogConfig::default();
        let m = BTreeMap::from([
            ("retention.ms".to_string(), "3600000".to_string()),
            ("segment.bytes".to_string(), "64 MiB".to_string()),
            ("flush.policy".to_string(), "every-batch".to_string()),
            ("retention.bytes".to_string(), "-1".to_string()),
        ]);
        let c = topic_log_config(&d, &m).expect("valid");
        assert_eq!(c.retention.time, Some(Duration::from_secs(3600)));
        assert_eq!(c.segment_bytes_max, 64 << 20);
        assert_eq!(c.flush, skein_storage::FlushPolicy::EveryBatch);
        assert_eq!(c.retention.bytes, None);
        let bad = BTreeMap::from([("colour".to_string(), "blue".to_string())]);
        assert!(matches!(
            topic_log_config(&d, &bad),
            Err(NodeError::InvalidTopicConfig { .. })
        ));
        let bad = BTreeMap::from([("segment.bytes".to_string(), "100".to_string())]);
        assert!(
            topic_log_config(&d, &bad).is_err(),
            "a segment smaller than a batch is refused"
        );
    }

    #[test]
    fn a_topic_group_commit_interval_near_the_election_timeout_is_refused() {
        let node = NodeConfig::default();
        let limit = node.raft.election_timeout_min / 2;
        let group_commit = |ms: u128| {
            BTreeMap::from([
                ("flush.policy".to_string(), "group-commit".to_string()),
                ("flush.interval.ms".to_string(), ms.to_string()),
            ])
        };
        let below = limit.as_millis() - 1;
        let c = check_topic_config(&node, &group_commit(below)).expect("below the limit");
        assert!(matches!(
            c.flush,
            skein_storage::FlushPolicy::GroupCommit { interval, .. }
                if interval == Duration::from_millis(below as u64)
        ));
        for ms in [limit.as_millis(), 10 * limit.as_millis()] {
            match check_topic_config(&node, &group_commit(ms)) {
                Err(e @ NodeError::InvalidTopicConfig { .. }) => {
                    let text = e.to_string();
                    assert!(text.contains("flush.interval.ms"), "{text}");
                    assert!(text.contains("raft.election_timeout_min"), "{text}");
                    assert!(
                        text.contains(&format!("{limit:?}")),
                        "names the limit: {text}"
                    );
                }
                other => panic!("{ms} ms: {other:?}"),
            }
        }
        // The interval only matters for group commit; other checks still apply.
        let every_batch = BTreeMap::from([("flush.interval.ms".to_string(), "1h".to_string())]);
        check_topic_config(&node, &every_batch).expect("not group commit");
        let bad = BTreeMap::from([("segment.bytes".to_string(), "100".to_string())]);
        assert!(check_topic_config(&node, &bad).is_err());
    }
}
