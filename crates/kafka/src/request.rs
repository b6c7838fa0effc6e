//! Request decoding: version check against the table, the length guard ([`crate::guard`]) over
//! header and body, then kafka-protocol's decoders for the header and the body. Pure (no I/O), so
//! that the fuzz target drives exactly what the listener runs.

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, CreateTopicsRequest, DeleteGroupsRequest, DeleteTopicsRequest,
    DescribeConfigsRequest, DescribeGroupsRequest, FetchRequest, FindCoordinatorRequest,
    HeartbeatRequest, InitProducerIdRequest, JoinGroupRequest, LeaveGroupRequest,
    ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest,
    OffsetFetchRequest, OffsetForLeaderEpochRequest, ProduceRequest, RequestHeader,
    SyncGroupRequest,
};
use kafka_protocol::protocol::Decodable;

use crate::config::REQUEST_BYTES_MIN;
use crate::KafkaError;
use crate::{guard, versions};

/// A decoded request: who sent it, which API and version, and the body.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedRequest {
    /// The API.
    pub api_key: ApiKey,
    /// The request's version.
    pub version: i16,
    /// Echoed in the response header.
    pub correlation_id: i32,
    /// The client's `client.id`.
    pub client_id: Option<String>,
    /// The body.
    pub body: RequestBody,
}

/// The body of a request of an API in the version table.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)] // one variant per API, named after it
pub enum RequestBody {
    /// ApiVersions of a version outside the table: answered with a v0 error body (no decoding).
    ApiVersionsUnsupported,
    ApiVersions(ApiVersionsRequest),
    Metadata(MetadataRequest),
    Produce(ProduceRequest),
    Fetch(FetchRequest),
    ListOffsets(ListOffsetsRequest),
    OffsetForLeaderEpoch(OffsetForLeaderEpochRequest),
    FindCoordinator(FindCoordinatorRequest),
    JoinGroup(JoinGroupRequest),
    SyncGroup(SyncGroupRequest),
    Heartbeat(HeartbeatRequest),
    LeaveGroup(LeaveGroupRequest),
    OffsetCommit(OffsetCommitRequest),
    OffsetFetch(OffsetFetchRequest),
    ListGroups(ListGroupsRequest),
    DescribeGroups(DescribeGroupsRequest),
    DeleteGroups(DeleteGroupsRequest),
    CreateTopics(CreateTopicsRequest),
    DeleteTopics(DeleteTopicsRequest),
    DescribeConfigs(DescribeConfigsRequest),
    InitProducerId(InitProducerIdRequest),
}

/// Decodes one request frame (size prefix already removed). Byte fields of the body (produce
/// records, group metadata) are slices of `frame`, not copies.
pub fn decode_request(mut frame: Bytes) -> Result<DecodedRequest, KafkaError> {
    if frame.len() < REQUEST_BYTES_MIN {
        return Err(KafkaError::FrameTooSmall {
            size: frame.len() as i64,
            min: REQUEST_BYTES_MIN,
        });
    }
    let api_key_raw = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(api_key_raw).map_err(|()| KafkaError::UnknownApiKey {
        api_key: api_key_raw,
    })?;
    let range = versions::lookup(api_key).ok_or(KafkaError::UnsupportedApi {
        api_key: api_key_raw,
    })?;
    if !(range.min..=range.max).contains(&version) {
        if api_key == ApiKey::ApiVersions {
            let body = RequestBody::ApiVersionsUnsupported;
            return Ok(DecodedRequest {
                api_key,
                version,
                correlation_id,
                client_id: None,
                body,
            });
        }
        let (min, max) = (range.min, range.max);
        return Err(KafkaError::UnsupportedVersion {
            api_key: api_key_raw,
            version,
            min,
            max,
        });
    }
    // kafka-protocol reserves arrays from their wire counts before decoding an element, so no
    // byte reaches its decoder before every length and count has been checked against the frame.
    guard::check_request(&frame, api_key, version).map_err(|error| KafkaError::Unbacked {
        api_key: api_key_raw,
        version,
        error,
    })?;
    let malformed = |reason: String| KafkaError::Decode {
        api_key: api_key_raw,
        version,
        reason,
    };
    let header = RequestHeader::decode(&mut frame, api_key.request_header_version(version))
        .map_err(|e| malformed(e.to_string()))?;
    let body = decode_body(api_key, &mut frame, version).map_err(malformed)?;
    let client_id = header.client_id.map(|c| c.to_string());
    Ok(DecodedRequest {
        api_key,
        version,
        correlation_id,
        client_id,
        body,
    })
}

/// Decodes the body of an API in the version table; the error is the decoder's message.
fn decode_body(api_key: ApiKey, buf: &mut Bytes, version: i16) -> Result<RequestBody, String> {
    use RequestBody as B;
    fn d<T: Decodable>(buf: &mut Bytes, version: i16) -> Result<T, String> {
        T::decode(buf, version).map_err(|e| e.to_string())
    }
    Ok(match api_key {
        ApiKey::ApiVersions => B::ApiVersions(d(buf, version)?),
        ApiKey::Metadata => B::Metadata(d(buf, version)?),
        ApiKey::Produce => B::Produce(d(buf, version)?),
        ApiKey::Fetch => B::Fetch(d(buf, version)?),
        ApiKey::ListOffsets => B::ListOffsets(d(buf, version)?),
        ApiKey::OffsetForLeaderEpoch => B::OffsetForLeaderEpoch(d(buf, version)?),
        ApiKey::FindCoordinator => B::FindCoordinator(d(buf, version)?),
        ApiKey::JoinGroup => B::JoinGroup(d(buf, version)?),
        ApiKey::SyncGroup => B::SyncGroup(d(buf, version)?),
        ApiKey::Heartbeat => B::Heartbeat(d(buf, version)?),
        ApiKey::LeaveGroup => B::LeaveGroup(d(buf, version)?),
        ApiKey::OffsetCommit => B::OffsetCommit(d(buf, version)?),
        ApiKey::OffsetFetch => B::OffsetFetch(d(buf, version)?),
        ApiKey::ListGroups => B::ListGroups(d(buf, version)?),
        ApiKey::DescribeGroups => B::DescribeGroups(d(buf, version)?),
        ApiKey::DeleteGroups => B::DeleteGroups(d(buf, version)?),
        ApiKey::CreateTopics => B::CreateTopics(d(buf, version)?),
        ApiKey::DeleteTopics => B::DeleteTopics(d(buf, version)?),
        ApiKey::DescribeConfigs => B::DescribeConfigs(d(buf, version)?),
        ApiKey::InitProducerId => B::InitProducerId(d(buf, version)?),
        other => return Err(format!("{other:?} is not in the version table")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};

    fn header(api_key: ApiKey, version: i16) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_i16(api_key as i16);
        b.put_i16(version);
        b.put_i32(9);
        b.put_i16(-1); // null client id
        b
    }

    #[test]
    fn decodes_header_and_body() {
        let mut b = header(ApiKey::Metadata, 1);
        b.put_i32(-1); // null topics: all
        let req = decode_request(b.freeze()).expect("valid");
        assert_eq!(
            (req.api_key, req.version, req.correlation_id),
            (ApiKey::Metadata, 1, 9)
        );
        assert!(matches!(req.body, RequestBody::Metadata(m) if m.topics.is_none()));
    }

    #[test]
    fn refuses_unknown_keys_versions_and_short_bodies() {
        let unknown = [0x7f, 0, 0, 0, 0, 0, 0, 1];
        assert!(matches!(
            decode_request(Bytes::copy_from_slice(&unknown)),
            Err(KafkaError::UnknownApiKey { .. })
        ));
        let produce_v0 = header(ApiKey::Produce, 0).freeze();
        assert!(matches!(
            decode_request(produce_v0),
            Err(KafkaError::UnsupportedVersion { min: 3, .. })
        ));
        let api_versions_v99 = header(ApiKey::ApiVersions, 99).freeze();
        let req = decode_request(api_versions_v99).expect("answered, not refused");
        assert_eq!(req.body, RequestBody::ApiVersionsUnsupported);
        let cut = header(ApiKey::Metadata, 1).freeze();
        assert!(matches!(
            decode_request(cut),
            Err(KafkaError::Unbacked { .. })
        ));
    }

    #[test]
    fn produce_records_are_slices_of_the_frame() {
        let mut b = header(ApiKey::Produce, 3);
        b.put_i16(-1); // no transactional id
        b.put_i16(1);
        b.put_i32(1000);
        b.put_i32(1);
        b.put_i16(1);
        b.put_slice(b"t");
        b.put_i32(1);
        b.put_i32(0);
        b.put_i32(4);
        b.put_slice(b"recs");
        let frame = b.freeze();
        let range = frame.as_ptr_range();
        let RequestBody::Produce(p) = decode_request(frame.clone()).expect("valid").body else {
            panic!("not a produce request")
        };
        let records = p.topic_data[0].partition_data[0]
            .records
            .clone()
            .expect("records");
        assert_eq!(&records[..], b"recs");
        assert!(
            range.contains(&records.as_ptr()),
            "records point into the frame (no copy)"
        );
    }

    /// kafka-protocol 0.18 pre-allocates arrays from the wire count (upstream kafka-protocol-rs
    /// PRs #152, #161, #200), so without the guard this aborts the process.
    #[test]
    fn huge_array_count_does_not_abort() {
        let mut b = header(ApiKey::Metadata, 1);
        b.put_i32(i32::MAX);
        let err = decode_request(b.freeze()).expect_err("refused");
        assert!(
            matches!(
                err,
                KafkaError::Unbacked {
                    api_key: 3,
                    version: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "refused api key 3 version 1 request before decoding: Topics at byte 10: array of \
             2147483647 elements needs at least 2147483647 x 2 bytes, 0 left"
        );
    }
}
