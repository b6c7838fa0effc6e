//! The Rust client library for Skein: [`Producer`], [`Consumer`] (manual assignment),
//! [`GroupConsumer`] (a member of a consumer group, with committed offsets) and [`Admin`]
//! (topics, cluster, consumer groups and offset reset) over the gRPC API in [`skein_proto`].
//!
//! A [`Client`] holds one HTTP/2 connection per broker (reused by every request) and a cache of
//! the cluster's metadata: topics, their partitions, each partition's leader and each node's
//! address. Requests go to the partition leader; a broker that is not the leader answers
//! NOT_LEADER and names the leader, and the client goes there at once. Other retryable errors
//! (no leader yet, a node starting, a lost connection) refresh the metadata and are retried with
//! exponential backoff, up to [`ClientConfig::max_retries`] times. Every error is a
//! [`ClientError`] carrying the broker's stable [`ErrorCode`] where there is one.
//!
//! What the library promises:
//! - **Keyed records keep their partition**: the partition of a keyed record is Kafka's
//!   (`murmur2(key)` like the Java client, see [`partitioner`]), so keys land where Kafka would
//!   put them for the same partition count.
//! - **Order per partition**: a producer has at most one request in flight per partition and
//!   retries a failed batch before anything sent after it.
//! - **No duplicates from retries**: with idempotence (the default) every batch carries the
//!   producer id and sequence, and the broker answers a retried batch with its first offset.
//! - **Bounded memory**: the producer's buffer is limited by
//!   [`ProducerConfig::buffer_bytes_max`]; `send` waits for space instead of growing.
//! - **Requests within limits**: a produce request never exceeds
//!   [`ProducerConfig::request_bytes_max`], nor the request limit the brokers advertise in their
//!   metadata (less headroom); batches of partitions led by one broker are split over as many
//!   requests as that takes. A request a broker still refuses (an older broker that does not
//!   advertise its limit, or one record larger than it) is a
//!   [`ClientError::RequestTooLarge`] that names both sizes.
//! - **Positions like Kafka's**: a [`GroupConsumer`] commits the position (the next record to
//!   hand out) of every assigned partition, also of one where nothing arrived, so a later member
//!   starts there; without a commit it starts as [`GroupConsumerConfig::auto_offset_reset`] says.
//!
//! # Producer
//! ```no_run
//! use skein_client::{Client, ClientConfig, Producer, ProducerConfig, ProducerRecord};
//!
//! # async fn run() -> Result<(), skein_client::ClientError> {
//! let client = Client::new(ClientConfig::new("127.0.0.1:9650"))?;
//! let producer = Producer::new(client, ProducerConfig::default()).await?;
//! // Queue several records first so they share a batch, then wait for the acknowledgements.
//! let mut deliveries = Vec::new();
//! for i in 0..100 {
//!     let record = ProducerRecord::new("orders", format!("order {i}")).key(format!("customer-{}", i % 7));
//!     deliveries.push(producer.send(record).await?);
//! }
//! for d in deliveries {
//!     let meta = d.await?;
//!     println!("written to {}:{} at offset {}", meta.topic, meta.partition, meta.offset);
//! }
//! producer.flush().await?;
//! # Ok(()) }
//! ```
//!
//! # Consumer
//! ```no_run
//! use skein_client::{Client, ClientConfig, Consumer, ConsumerConfig, TopicPartition};
//!
//! # async fn run() -> Result<(), skein_client::ClientError> {
//! let client = Client::new(ClientConfig::new("127.0.0.1:9650"))?;
//! let mut consumer = Consumer::new(client, ConsumerConfig::default())?;
//! consumer.assign([TopicPartition::new("orders", 0), TopicPartition::new("orders", 1)]);
//! consumer.seek_to_beginning(&[]).await?;
//! loop {
//!     for record in consumer.poll().await? {
//!         println!("{}:{} @{} {:?}", record.topic, record.partition, record.offset, record.value);
//!     }
//! }
//! # }
//! ```
//!
//! # Consumer group
//! Members of a group share the subscribed topics' partitions; each commits the offset of the
//! next record to process, and a member that takes a partition over starts there. See
//! [`GroupConsumer`] for rebalance events and commits.
//! ```no_run
//! use skein_client::{Client, ClientConfig, GroupConsumer, GroupConsumerConfig, OffsetReset};
//!
//! # async fn run() -> Result<(), skein_client::ClientError> {
//! let client = Client::new(ClientConfig::new("127.0.0.1:9650"))?;
//! let config = GroupConsumerConfig {
//!     auto_offset_reset: OffsetReset::Earliest,
//!     ..GroupConsumerConfig::new("billing")
//! };
//! let mut consumer = GroupConsumer::new(client, config)?;
//! consumer.subscribe(["orders"]);
//! for _ in 0..100 {
//!     for record in consumer.poll().await? {
//!         println!("{}:{} @{}", record.topic, record.partition, record.offset);
//!     }
//!     consumer.commit().await?; // or rely on auto-commit
//! }
//! consumer.close().await?; // commits and leaves the group
//! # Ok(()) }
//! ```
//!
//! # Admin
//! ```no_run
//! use skein_client::{Admin, Client, ClientConfig, NewTopic, OffsetSpec, TopicPartition};
//!
//! # async fn run() -> Result<(), skein_client::ClientError> {
//! let admin = Admin::new(Client::new(ClientConfig::new("127.0.0.1:9650"))?);
//! let topic = admin
//!     .create_topic(NewTopic::new("orders").partitions(6).replication_factor(3).config("retention.ms", "604800000"))
//!     .await?;
//! println!("{} has {} partitions", topic.name, topic.partitions.len());
//! let ends = admin.list_offsets(&[(TopicPartition::new("orders", 0), OffsetSpec::Latest)]).await?;
//! println!("partition 0 ends at {}", ends[0].offset);
//! for node in admin.describe_cluster().await?.nodes {
//!     println!("node {} at {} ready={}", node.node_id, node.client_addr, node.ready);
//! }
//! # Ok(()) }
//! ```

mod admin;
mod cluster;
mod compression;
mod config;
mod consumer;
mod decode;
mod error;
mod fxhash;
mod group;
pub mod partitioner;
mod producer;
mod record;

pub use crate::admin::{Admin, ClusterDescription, NewTopic, OffsetSpec, PartitionOffsets};
pub use crate::cluster::{
    Client, ClusterMetadata, NodeDescription, PartitionDescription, TopicDescription,
};
pub use crate::config::{
    parse_broker_list, Acks, AssignmentStrategy, ClientConfig, Compression, ConsumerConfig,
    GroupConsumerConfig, OffsetReset, ProducerConfig, DEFAULT_BROKERS, REQUEST_BYTES_MAX_DEFAULT,
    SESSION_TIMEOUT_MAX, SESSION_TIMEOUT_MIN,
};
pub use crate::consumer::Consumer;
pub use crate::error::{ClientError, ErrorCode, LeaderHint, Result};
pub use crate::group::admin::{
    GroupDescription, GroupListing, GroupMember, OffsetAndMetadata, PartitionLag, ResetPlan,
    ResetPlanEntry, ResetStrategy, TopicPartitions,
};
pub use crate::group::consumer::{CommitHandle, GroupConsumer, GroupEvent};
pub use crate::producer::{DeliveryFuture, Producer};
pub use crate::record::{ConsumerRecord, Header, ProducerRecord, RecordMetadata, TopicPartition};

/// The wire types, for tests and tools that speak the protocol directly.
pub use skein_proto::v1 as proto;
