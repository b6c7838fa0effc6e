//! Feeds arbitrary bytes through the Kafka listener's framing and request decoding: the frame
//! splitter (size prefix checked before allocation), then `decode_request`, exactly as a
//! connection runs them: the version check, the length guard (`skein_kafka::guard`, which walks
//! header and body against the API's schema so that no array count or length the frame cannot
//! back reaches kafka-protocol), then kafka-protocol's header and body decoders. None may panic
//! or abort, whatever the bytes.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

/// A small frame limit keeps the fuzzer on the decoding paths, not on huge reservations.
const FRAME_BYTES_MAX: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    // As the whole frame (size prefix already removed).
    let _ = skein_kafka::decode_request(bytes::Bytes::copy_from_slice(data));
    // As a stream of size-prefixed frames.
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = skein_kafka::frame::split_frame(&mut buf, FRAME_BYTES_MAX) {
        let _ = skein_kafka::decode_request(frame);
    }
});
