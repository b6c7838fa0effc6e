//! Skein's wire types: prost messages and tonic services generated from the `.proto` files in
//! the repository's top-level `proto/` directory.
//!
//! Only `skein-node` and `skein-client` depend on this crate; `skein-storage` and the CLI never
//! see protobuf.

/// Version 1 of the Skein API (`package skein.v1`).
#[allow(missing_docs, clippy::all, missing_debug_implementations)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/skein.v1.rs"));
}

#[cfg(test)]
mod tests {
    use super::v1::ErrorCode;

    #[test]
    fn error_codes_are_stable() {
        // These numbers are a wire contract: a failing test here means a code was renumbered.
        assert_eq!(ErrorCode::None as i32, 0);
        assert_eq!(ErrorCode::NotLeader as i32, 1);
        assert_eq!(ErrorCode::OffsetOutOfRange as i32, 4);
        assert_eq!(ErrorCode::TopicAlreadyExists as i32, 10);
        assert_eq!(
            ErrorCode::from_str_name("ERROR_CODE_CORRUPT_BATCH"),
            Some(ErrorCode::CorruptBatch)
        );
    }
}
