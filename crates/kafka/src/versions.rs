//! The version table: for each API this listener implements, the versions it decodes and the
//! range it advertises in ApiVersions. Dispatch and ApiVersions both read this one table.
//!
//! Choices (see the crate docs for the summary):
//! - No topic-id versions: Fetch stops at 12, OffsetCommit and OffsetFetch at 8, DeleteTopics at
//!   5, CreateTopics at 6. Metadata goes to 12; its topic id fields are left zero, which clients
//!   read as "no topic id" (they then keep using names, also for Fetch <= 12).
//! - Produce decodes v3..=9 (record batch v2 only, which is all Skein stores) but advertises
//!   v0..=9: librdkafka enables gzip, snappy and lz4 only if the Produce range overlaps v0 (its
//!   feature check predates KIP-896), and clients always pick the highest common version, so
//!   v0..=2 are never sent by a client that supports v3. Kafka 4.0 does the same (KAFKA-18659).
//!   A v0..=2 Produce request closes the connection, like an unsupported version of any API.
//! - zstd needs Produce v7 and Fetch v10 in librdkafka; both are inside the ranges.
//! - Kafka's classic group membership (JoinGroup 0..=9, Heartbeat 0..=4, LeaveGroup 0..=5,
//!   SyncGroup 0..=5) starts at v0: librdkafka's "broker balanced consumer" feature check looks
//!   for JoinGroup, SyncGroup, Heartbeat, LeaveGroup and FindCoordinator v0, and refuses
//!   `subscribe()` without it. The ranges match the request guard's schemas (`guard/schema.rs`).
//!   Coordination (generations, rebalances, static membership) is the node's.

use kafka_protocol::messages::ApiKey;

/// One row of the version table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRange {
    /// The API.
    pub key: ApiKey,
    /// Lowest version advertised in ApiVersions.
    pub advertised_min: i16,
    /// Lowest version decoded and handled.
    pub min: i16,
    /// Highest version decoded, handled and advertised.
    pub max: i16,
}

const fn row(key: ApiKey, min: i16, max: i16) -> ApiRange {
    ApiRange {
        key,
        advertised_min: min,
        min,
        max,
    }
}

/// The version table, ordered by api key.
pub const SUPPORTED: &[ApiRange] = &[
    ApiRange {
        key: ApiKey::Produce,
        advertised_min: 0,
        min: 3,
        max: 9,
    },
    row(ApiKey::Fetch, 4, 12),
    row(ApiKey::ListOffsets, 1, 6),
    row(ApiKey::Metadata, 0, 12),
    row(ApiKey::OffsetCommit, 2, 8),
    row(ApiKey::OffsetFetch, 1, 8),
    row(ApiKey::FindCoordinator, 0, 4),
    row(ApiKey::JoinGroup, 0, 9),
    row(ApiKey::Heartbeat, 0, 4),
    row(ApiKey::LeaveGroup, 0, 5),
    row(ApiKey::SyncGroup, 0, 5),
    row(ApiKey::DescribeGroups, 0, 5),
    row(ApiKey::ListGroups, 0, 4),
    row(ApiKey::ApiVersions, 0, 4),
    row(ApiKey::CreateTopics, 2, 6),
    row(ApiKey::DeleteTopics, 1, 5),
    row(ApiKey::InitProducerId, 0, 4),
    row(ApiKey::OffsetForLeaderEpoch, 2, 4),
    row(ApiKey::DescribeConfigs, 1, 4),
    row(ApiKey::DeleteGroups, 0, 2),
];

/// The row for `key`, if this listener implements the API.
pub fn lookup(key: ApiKey) -> Option<&'static ApiRange> {
    SUPPORTED.iter().find(|r| r.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_within_the_codec_and_sorted() {
        let mut last = -1;
        for r in SUPPORTED {
            let codec = r.key.valid_versions();
            assert!(
                r.min >= codec.min && r.max <= codec.max,
                "{:?} outside codec",
                r.key
            );
            assert!(
                r.advertised_min <= r.min && r.min <= r.max,
                "{:?} range",
                r.key
            );
            assert!((r.key as i16) > last, "{:?} out of order", r.key);
            last = r.key as i16;
        }
    }

    #[test]
    fn produce_advertises_v0_but_decodes_from_v3() {
        let produce = lookup(ApiKey::Produce).expect("produce is in the table");
        assert_eq!((produce.advertised_min, produce.min), (0, 3));
        assert!(produce.max >= 7, "librdkafka needs Produce v7 for zstd");
        assert!(
            lookup(ApiKey::Fetch).expect("fetch").max >= 10,
            "zstd needs Fetch v10"
        );
        assert!(lookup(ApiKey::SaslHandshake).is_none());
    }

    #[test]
    fn classic_group_membership_starts_at_v0_like_the_guard() {
        for key in [
            ApiKey::JoinGroup,
            ApiKey::SyncGroup,
            ApiKey::Heartbeat,
            ApiKey::LeaveGroup,
            ApiKey::FindCoordinator,
        ] {
            let r = lookup(key).expect("classic group membership is advertised");
            assert_eq!(r.advertised_min, 0, "{key:?}: librdkafka looks for v0");
            let guard = crate::guard::schema_versions(key).expect("the guard knows the API");
            assert_eq!(
                (r.min, r.max),
                guard,
                "{key:?}: table and guard schema differ"
            );
        }
    }
}
