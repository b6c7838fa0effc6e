//! Feeds arbitrary bytes through the Kafka listener's framing and request decoding: the frame
//! splitter (size prefix checked before allocation) and then header + body decoding, exactly as
//! a connection runs them. Neither may panic, whatever the bytes.
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
