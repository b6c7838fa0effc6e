//! The descriptions against kafka-protocol, for every (api, version) of the version table:
//! requests encoded by kafka-protocol's client-side encoders pass the guard and are walked to
//! their last byte; requests generated from the descriptions decode with kafka-protocol and
//! encode back to the same bytes; every truncation and every inflated length prefix is refused.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, CreateTopicsRequest, DeleteGroupsRequest, DeleteTopicsRequest,
    DescribeConfigsRequest, DescribeGroupsRequest, FetchRequest, FindCoordinatorRequest,
    HeartbeatRequest, InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest,
    ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest,
    OffsetFetchRequest, OffsetForLeaderEpochRequest, ProduceRequest, RequestHeader,
    SyncGroupRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use proptest::prelude::*;

use super::*;
use crate::{decode_request, versions, KafkaError};

/// Calls `$f::<T>($args)` with `T` the request type of `$api`.
macro_rules! with_request_type {
    ($api:expr, $f:ident($($arg:expr),*)) => {
        match $api {
            ApiKey::Produce => $f::<ProduceRequest>($($arg),*),
            ApiKey::Fetch => $f::<FetchRequest>($($arg),*),
            ApiKey::ListOffsets => $f::<ListOffsetsRequest>($($arg),*),
            ApiKey::Metadata => $f::<MetadataRequest>($($arg),*),
            ApiKey::OffsetCommit => $f::<OffsetCommitRequest>($($arg),*),
            ApiKey::OffsetFetch => $f::<OffsetFetchRequest>($($arg),*),
            ApiKey::FindCoordinator => $f::<FindCoordinatorRequest>($($arg),*),
            ApiKey::JoinGroup => $f::<JoinGroupRequest>($($arg),*),
            ApiKey::Heartbeat => $f::<HeartbeatRequest>($($arg),*),
            ApiKey::LeaveGroup => $f::<LeaveGroupRequest>($($arg),*),
            ApiKey::SyncGroup => $f::<SyncGroupRequest>($($arg),*),
            ApiKey::DescribeGroups => $f::<DescribeGroupsRequest>($($arg),*),
            ApiKey::ListGroups => $f::<ListGroupsRequest>($($arg),*),
            ApiKey::ApiVersions => $f::<ApiVersionsRequest>($($arg),*),
            ApiKey::CreateTopics => $f::<CreateTopicsRequest>($($arg),*),
            ApiKey::DeleteTopics => $f::<DeleteTopicsRequest>($($arg),*),
            ApiKey::InitProducerId => $f::<InitProducerIdRequest>($($arg),*),
            ApiKey::OffsetForLeaderEpoch => $f::<OffsetForLeaderEpochRequest>($($arg),*),
            ApiKey::DescribeConfigs => $f::<DescribeConfigsRequest>($($arg),*),
            ApiKey::DeleteGroups => $f::<DeleteGroupsRequest>($($arg),*),
            other => panic!("{other:?} is not in the version table"),
        }
    };
}

/// Every (api, version) with a description, whether or not the version table lists it now.
fn described() -> Vec<(ApiKey, i16)> {
    (0..=i16::MAX)
        .map_while(|raw| (raw < 100).then(|| ApiKey::try_from(raw).ok()))
        .flatten()
        .filter_map(|api| describe(api).map(|m| (api, m.checked)))
        .flat_map(|(api, v)| (v.min..=v.max).map(move |version| (api, version)))
        .collect()
}

/// Whether `decode_request` hands (api, version) to the guard and kafka-protocol.
fn in_table(api: ApiKey, version: i16) -> bool {
    versions::lookup(api).is_some_and(|r| (r.min..=r.max).contains(&version))
}

fn encode_default<T: Encodable + Default>(version: i16) -> Vec<u8> {
    let mut out = BytesMut::new();
    T::default()
        .encode(&mut out, version)
        .expect("default encodes");
    out.to_vec()
}

/// Decodes `body` with kafka-protocol and encodes the result again: (bytes, bytes consumed).
fn reencode<T: Encodable + Decodable>(body: &[u8], version: i16) -> (Vec<u8>, usize) {
    try_reencode::<T>(body, version).expect("kafka-protocol decodes and encodes it")
}

fn try_reencode<T: Encodable + Decodable>(body: &[u8], version: i16) -> Option<(Vec<u8>, usize)> {
    let mut buf = Bytes::copy_from_slice(body);
    let message = T::decode(&mut buf, version).ok()?;
    let mut out = BytesMut::new();
    message.encode(&mut out, version).ok()?;
    Some((out.to_vec(), body.len() - buf.len()))
}

fn decode_only<T: Decodable>(buf: &mut Bytes, version: i16) -> Result<(), String> {
    T::decode(buf, version).map(drop).map_err(|e| e.to_string())
}

/// What `decode_request` runs after its version check (guard, then kafka-protocol's header and
/// body decoders), for any described (api, version), in the version table or not.
fn guarded_decode(frame: &[u8], api: ApiKey, version: i16) -> Result<(), String> {
    check_request(frame, api, version).map_err(|e| e.to_string())?;
    let mut buf = Bytes::copy_from_slice(frame);
    RequestHeader::decode(&mut buf, api.request_header_version(version))
        .map_err(|e| e.to_string())?;
    with_request_type!(api, decode_only(&mut buf, version))
}

/// A whole request frame: a header encoded by kafka-protocol, then `body`.
fn frame(api: ApiKey, version: i16, body: &[u8]) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("guard-test")));
    let mut out = BytesMut::new();
    header
        .encode(&mut out, api.request_header_version(version))
        .expect("header encodes");
    out.put_slice(body);
    out.to_vec()
}

/// A small deterministic generator of request bodies from a description.
struct Gen {
    state: u64,
    version: i16,
    flexible: bool,
    /// Also null where the description says the field is not nullable.
    any_null: bool,
}

impl Gen {
    fn new(seed: u64, message: &Message, version: i16) -> Self {
        Self {
            state: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            version,
            flexible: message.flexible.contains(version),
            any_null: false,
        }
    }

    fn below(&mut self, n: u64) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state % n
    }

    fn body(&mut self, message: &Message) -> Vec<u8> {
        let mut out = Vec::new();
        self.fields(message.fields, &mut out);
        out
    }

    fn fields(&mut self, fields: &[Field], out: &mut Vec<u8>) {
        let version = self.version;
        for f in fields.iter().filter(|f| f.versions.contains(version)) {
            if f.tag.is_none() {
                self.value(f.ty, f.nullable.contains(version), out);
            }
        }
        if self.flexible {
            self.tagged(fields, out);
        }
    }

    /// Known tagged fields (never null, so never the default, which is not sent) and sometimes
    /// one unknown tag after them.
    fn tagged(&mut self, fields: &[Field], out: &mut Vec<u8>) {
        let (mut entries, version) = (Vec::new(), self.version);
        for f in fields.iter().filter(|f| f.versions.contains(version)) {
            if let Some(tag) = f.tag.filter(|_| self.below(2) == 0) {
                let mut value = Vec::new();
                self.value(f.ty, false, &mut value);
                entries.push((tag, value));
            }
        }
        if self.below(3) == 0 {
            let value = (0..self.below(4)).map(|_| self.below(256) as u8).collect();
            entries.push((100 + self.below(50) as u32, value));
        }
        uvarint(out, entries.len() as u32);
        for (tag, value) in entries {
            uvarint(out, tag);
            uvarint(out, value.len() as u32);
            out.extend_from_slice(&value);
        }
    }

    fn value(&mut self, ty: Type, nullable: bool, out: &mut Vec<u8>) {
        let null = (nullable || self.any_null) && self.below(4) == 0;
        match ty {
            Type::Bool => out.push(self.below(2) as u8),
            Type::Int8 | Type::Int16 | Type::Int32 | Type::Int64 | Type::Float64 | Type::Uuid => {
                let width = ty.min_size(self.version, false);
                out.extend((0..width).map(|_| self.below(256) as u8));
            }
            Type::String | Type::Bytes | Type::Records => {
                let len = (!null).then(|| self.below(6) as usize);
                let wide = !matches!(ty, Type::String);
                self.prefix(len, wide, out);
                for _ in 0..len.unwrap_or(0) {
                    out.push(b'a' + self.below(26) as u8);
                }
            }
            Type::Array(element) => {
                let count = (!null).then(|| self.below(3) as usize);
                self.prefix(count, true, out);
                for _ in 0..count.unwrap_or(0) {
                    self.value(*element, false, out);
                }
            }
            Type::Struct(fields) => self.fields(fields, out),
        }
    }

    fn prefix(&mut self, len: Option<usize>, wide: bool, out: &mut Vec<u8>) {
        match (self.flexible, wide) {
            (true, _) => uvarint(out, len.map_or(0, |n| n as u32 + 1)),
            (false, true) => out.extend(len.map_or(-1, |n| n as i32).to_be_bytes()),
            (false, false) => out.extend(len.map_or(-1, |n| n as i16).to_be_bytes()),
        }
    }
}

fn uvarint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A request of `api` `version` generated from its description and encoded by kafka-protocol.
fn sample(api: ApiKey, version: i16, seed: u64) -> Vec<u8> {
    let message = describe(api).expect("described");
    let body = Gen::new(seed, message, version).body(message);
    let (encoded, consumed) = with_request_type!(api, reencode(&body, version));
    assert_eq!(
        consumed,
        body.len(),
        "{api:?} v{version}: decoder stopped early"
    );
    assert_eq!(
        encoded, body,
        "{api:?} v{version}: round trip changed the bytes"
    );
    frame(api, version, &encoded)
}

/// The length and count prefixes the guard reads in `frame`.
fn prefixes(frame: &[u8], api: ApiKey, version: i16) -> Vec<Prefix> {
    let mut w = Walker::new(frame);
    w.header(api.request_header_version(version))
        .expect("header");
    w.body(describe(api).expect("described"), version)
        .expect("body");
    w.prefixes
}

/// `frame` with the prefix at `p` replaced by `value` (an unsigned varint keeps its value's
/// own width).
fn rewrite(frame: &[u8], p: Prefix, value: u32) -> Vec<u8> {
    let mut out = frame[..p.pos].to_vec();
    let old_width = match p.width {
        0 => {
            frame[p.pos..]
                .iter()
                .position(|b| b & 0x80 == 0)
                .expect("end")
                + 1
        }
        w => w,
    };
    match p.width {
        0 => uvarint(&mut out, value),
        2 => out.extend((value as i16).to_be_bytes()),
        _ => out.extend((value as i32).to_be_bytes()),
    }
    out.extend_from_slice(&frame[p.pos + old_width..]);
    out
}

fn read_prefix(frame: &[u8], p: Prefix) -> u32 {
    match p.width {
        0 => {
            let mut w = Walker::new(frame);
            w.pos = p.pos;
            w.uvarint(false).expect("varint")
        }
        2 => i16::from_be_bytes([frame[p.pos], frame[p.pos + 1]]) as u32,
        _ => i32::from_be_bytes(frame[p.pos..p.pos + 4].try_into().expect("4 bytes")) as u32,
    }
}

#[test]
fn versions_parse_as_the_schemas_write_them() {
    let v = Versions::parse;
    assert_eq!(
        v("3+"),
        Versions {
            min: 3,
            max: i16::MAX
        }
    );
    assert_eq!(v("8-10"), Versions { min: 8, max: 10 });
    assert_eq!(v("12"), Versions { min: 12, max: 12 });
    assert!(!v("none").contains(0));
}

#[test]
fn descriptions_cover_the_version_table() {
    for r in versions::SUPPORTED {
        let message = describe(r.key).unwrap_or_else(|| panic!("{:?} undescribed", r.key));
        assert!(
            message.checked.contains(r.min) && message.checked.contains(r.max),
            "{:?}: the description was not checked for all of {}..={}",
            r.key,
            r.min,
            r.max
        );
    }
    assert!(described().len() >= 100, "group APIs are described too");
}

#[test]
fn default_requests_pass_the_guard_whole() {
    for (api, version) in described() {
        let body = with_request_type!(api, encode_default(version));
        let frame = frame(api, version, &body);
        let walked = check_request(&frame, api, version);
        assert_eq!(walked, Ok(frame.len()), "{api:?} v{version}");
        if in_table(api, version) {
            decode_request(Bytes::from(frame)).expect("decodes");
        }
    }
}

#[test]
fn generated_requests_round_trip_and_pass_the_guard_whole() {
    for (api, version) in described() {
        for seed in 0..200 {
            let frame = sample(api, version, seed);
            let walked = check_request(&frame, api, version);
            assert_eq!(walked, Ok(frame.len()), "{api:?} v{version} seed {seed}");
            if in_table(api, version) {
                decode_request(Bytes::from(frame)).expect("decodes");
            }
        }
    }
}

/// kafka-protocol does not check nullable versions, so a null it decodes and encodes back may
/// still be one the schema forbids in that version; these are all the guard refuses, each checked
/// against the schema's `nullableVersions`.
const NOT_NULLABLE_IN_SCHEMA: &[(ApiKey, &str, &str)] = &[
    (ApiKey::Metadata, "Topics", "0"),
    (ApiKey::Metadata, "Topics.Name", "0-9"),
    (ApiKey::OffsetFetch, "Topics", "1"),
];

#[test]
fn nullable_wherever_kafka_protocol_round_trips_a_null_and_the_schema_allows_it() {
    let mut refused = std::collections::BTreeSet::new();
    for (api, version) in described() {
        let message = describe(api).expect("described");
        for seed in 0..300 {
            let mut gen = Gen::new(seed, message, version);
            gen.any_null = true;
            let body = gen.body(message);
            let Some((encoded, consumed)) = with_request_type!(api, try_reencode(&body, version))
            else {
                continue;
            };
            if (consumed, &encoded) != (body.len(), &body) {
                continue;
            }
            if let Err(e) = check_request(&frame(api, version, &body), api, version) {
                assert_eq!(e.problem, Problem::Null, "{api:?} v{version}: {e}");
                let path: Vec<_> = e
                    .path
                    .iter()
                    .filter_map(|s| match s {
                        Step::Field(name) => Some(*name),
                        Step::Index(_) => None,
                    })
                    .collect();
                refused.insert((api as i16, path.join("."), version));
            }
        }
    }
    let allowed: std::collections::BTreeSet<_> = NOT_NULLABLE_IN_SCHEMA
        .iter()
        .flat_map(|(api, path, versions)| {
            let v = Versions::parse(versions);
            (v.min..=v.max).map(move |version| (*api as i16, path.to_string(), version))
        })
        .collect();
    assert_eq!(refused, allowed);
}

#[test]
fn every_truncation_is_refused_by_the_guard() {
    for (api, version) in described() {
        for seed in 0..4 {
            let frame = sample(api, version, seed);
            for cut in 0..frame.len() {
                let what = format!("{api:?} v{version} seed {seed} cut at {cut}");
                assert!(
                    check_request(&frame[..cut], api, version).is_err(),
                    "{what}"
                );
                assert!(
                    guarded_decode(&frame[..cut], api, version).is_err(),
                    "{what}"
                );
                assert!(decode_request(Bytes::copy_from_slice(&frame[..cut])).is_err());
            }
        }
    }
}

#[test]
fn every_inflated_length_is_refused_or_decoded_without_panic() {
    for (api, version) in described() {
        for seed in 0..4 {
            let frame = sample(api, version, seed);
            for p in prefixes(&frame, api, version) {
                let huge = match p.width {
                    0 => u32::MAX,
                    2 => i16::MAX as u32,
                    _ => i32::MAX as u32,
                };
                let inflated = rewrite(&frame, p, huge);
                let what = format!("{api:?} v{version} seed {seed} prefix at {}", p.pos);
                assert!(check_request(&inflated, api, version).is_err(), "{what}");
                if in_table(api, version) {
                    let err = decode_request(Bytes::from(inflated)).expect_err("refused");
                    assert!(matches!(err, KafkaError::Unbacked { .. }), "{what}: {err}");
                }
                let one_more = rewrite(&frame, p, read_prefix(&frame, p).wrapping_add(1));
                let _ = guarded_decode(&one_more, api, version);
                let _ = decode_request(Bytes::from(one_more));
            }
        }
    }
}

#[test]
fn header_lengths_are_guarded() {
    let mut b = BytesMut::new();
    b.put_i16(ApiKey::ApiVersions as i16);
    b.put_i16(3);
    b.put_i32(1);
    b.put_i16(0x7fff); // client id longer than the frame
    let err = decode_request(b.clone().freeze()).expect_err("refused");
    assert!(matches!(err, KafkaError::Unbacked { .. }), "{err}");
    b.truncate(8);
    b.put_i16(-1);
    b.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]); // u32::MAX tagged fields
    let err = decode_request(b.freeze()).expect_err("refused");
    assert!(matches!(err, KafkaError::Unbacked { .. }), "{err}");
}

#[test]
fn known_tagged_fields_must_fill_their_size() {
    // Fetch v12 with ClusterId (tag 0) declared as 3 bytes but holding a 1-byte compact string.
    let mut request = frame(ApiKey::Fetch, 12, &[]);
    request.extend([0; 12]); // replica id, max wait, min bytes
    request.extend([0; 13]); // max bytes, isolation level, session id, session epoch
    request.extend([1, 1, 1]); // no topics, no forgotten topics, empty rack id
    request.extend([1, 0, 3, 1, 0, 0]); // one tagged field: tag 0, size 3, "" and 2 stray bytes
    let err = check_request(&request, ApiKey::Fetch, 12).expect_err("refused");
    assert!(
        err.to_string()
            .contains("tagged field 0 declares 3 bytes, its value uses 1"),
        "{err}"
    );
}

proptest! {
    /// Arbitrary bodies behind a valid header: refused or decoded, never a panic or an abort.
    #[test]
    fn arbitrary_bodies_never_panic(
        index in 0..described().len(),
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let (api, version) = described()[index];
        let frame = frame(api, version, &body);
        let _ = guarded_decode(&frame, api, version);
        let _ = decode_request(Bytes::from(frame));
    }

    /// Valid requests with a few bytes overwritten: refused or decoded, never a panic.
    #[test]
    fn mutated_requests_never_panic(
        index in 0..described().len(),
        seed in 0u64..64,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
    ) {
        let (api, version) = described()[index];
        let mut frame = sample(api, version, seed);
        for (at, byte) in edits {
            let at = at % frame.len();
            frame[at] = byte;
        }
        let _ = guarded_decode(&frame, api, version);
        let _ = decode_request(Bytes::from(frame));
    }
}
