//! ApiVersions: the version table, answered for any request version.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiVersionsResponse;

use crate::error::UNSUPPORTED_VERSION;
use crate::versions::SUPPORTED;

fn table() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|r| {
            ApiVersion::default()
                .with_api_key(r.key as i16)
                .with_min_version(r.advertised_min)
                .with_max_version(r.max)
        })
        .collect()
}

/// The response to a supported ApiVersions version.
pub(super) fn supported() -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(table())
}

/// The response to an ApiVersions version above the table: encoded as v0 with
/// UNSUPPORTED_VERSION and the table, so the client can retry with a version it shares.
pub(super) fn unsupported() -> ApiVersionsResponse {
    supported().with_error_code(UNSUPPORTED_VERSION)
}
