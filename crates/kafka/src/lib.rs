//! Kafka wire protocol (being written).
