//! The Kafka wire protocol for Skein, so that existing Kafka clients (librdkafka/kcat,
//! confluent-kafka, kafka-python, kafkajs, Java) work unchanged.
//!
//! The crate is framing ([`frame`]), the version table ([`versions`]), the length guard
//! ([`guard`]), request decoding ([`request`]), error-code mapping ([`error`]), request handlers
//! and the connection loop ([`serve`]). It reaches the broker only through the [`Backend`] trait,
//! which `skein-node` implements over its transport-neutral broker core.
//!
//! Architecture invariant: this crate never depends on tonic, skein-proto, openraft, skein-raft,
//! skein-storage or skein-node. Record bytes are carried opaquely: Skein stores Kafka's
//! RecordBatch v2, so produced bytes go to the backend as slices of the request frame and fetched
//! bytes come back as whole batches.
//!
//! # Versions
//! | API | versions | notes |
//! |---|---|---|
//! | Produce | 3–9 (advertised 0–9) | v0–2 only advertised: librdkafka enables compression only if v0 is listed |
//! | Fetch | 4–12 | no topic ids (v13+); no fetch sessions (session id 0) |
//! | ListOffsets | 1–6 | earliest, latest, by timestamp |
//! | Metadata | 0–12 | topic ids left zero; never auto-creates |
//! | OffsetCommit / OffsetFetch | 2–8 / 1–8 | OffsetFetch v8 batches groups |
//! | FindCoordinator | 0–4 | v4 batches keys; groups only |
//! | ListGroups, DescribeGroups, DeleteGroups | 0–4, 0–5, 0–2 | |
//! | ApiVersions | 0–4 | any other version: a v0 body with UNSUPPORTED_VERSION and the table |
//! | CreateTopics, DeleteTopics, DescribeConfigs | 2–6, 1–5, 1–4 | |
//! | InitProducerId, OffsetForLeaderEpoch | 0–4, 2–4 | idempotence only, no transactions |
//!
//! | JoinGroup, SyncGroup, Heartbeat, LeaveGroup | 0–9, 0–5, 0–4, 0–5 | classic membership; the node coordinates, assignments pass through unread |
//!
//! # Invariants
//! - A frame's size prefix is checked against [`KafkaConfig::frame_bytes_max`] before any buffer
//!   for it is reserved.
//! - No request reaches kafka-protocol's decoders before [`guard::check_request`] has walked its
//!   header and body against the API's schema and found every array count, string, bytes and
//!   tagged-field length backed by bytes of the frame (kafka-protocol 0.18 reserves arrays from
//!   the wire count, and a failed reservation aborts the process).
//! - Responses are written in request order on each connection. Reads may run side by side (up to
//!   [`KafkaConfig::in_flight_max`]); a write (produce, commit, group membership, topic change)
//!   runs alone, after every earlier request and before every later one.
//! - Produce with acks=0 gets no response; a later request's response still arrives in order. A
//!   failed acks=0 produce closes the connection, as Kafka does.
//! - An unknown api key, an unsupported version (except of ApiVersions), or a malformed or
//!   truncated request closes the connection with the reason logged at warn; nothing panics.

pub mod backend;
pub mod config;
pub mod error;
pub mod frame;
pub mod guard;
mod handlers;
pub mod request;
mod server;
pub mod versions;

pub use backend::Backend;
pub use config::KafkaConfig;
pub use error::{BackendError, KafkaError};
pub use request::{decode_request, DecodedRequest, RequestBody};
pub use server::serve;
