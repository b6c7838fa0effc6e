//! Kafka RecordBatch v2 codec (being written).
