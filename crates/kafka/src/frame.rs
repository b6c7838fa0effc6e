//! Framing: every Kafka request and response is a 4-byte big-endian size followed by that many
//! bytes. The size is checked against the limit before any buffer for the frame is reserved, and a
//! frame is split off the read buffer as `Bytes`, so produce record bytes are slices of it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::Encodable;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::config::REQUEST_BYTES_MIN;
use crate::KafkaError;

/// Bytes of the size prefix.
pub const SIZE_PREFIX_BYTES: usize = 4;

/// Read-ahead buffer per connection before any frame size is known.
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// Reads size-prefixed frames from a stream. Cancel safe: all progress lives in the buffer, so a
/// `next_frame` future dropped in a `select!` loses nothing.
#[derive(Debug)]
pub struct FrameReader<R> {
    reader: R,
    buf: BytesMut,
    frame_bytes_max: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader refusing frames larger than `frame_bytes_max` (size prefix excluded).
    pub fn new(reader: R, frame_bytes_max: usize) -> Self {
        Self {
            reader,
            buf: BytesMut::with_capacity(READ_BUFFER_BYTES),
            frame_bytes_max,
        }
    }

    /// The next frame without its size prefix; `None` at a clean end of stream.
    pub async fn next_frame(&mut self) -> Result<Option<Bytes>, KafkaError> {
        loop {
            if let Some(frame) = split_frame(&mut self.buf, self.frame_bytes_max)? {
                return Ok(Some(frame));
            }
            if self.buf.capacity() == self.buf.len() {
                self.buf.reserve(READ_BUFFER_BYTES);
            }
            if self.reader.read_buf(&mut self.buf).await? == 0 {
                return match self.buf.len() {
                    0 => Ok(None),
                    received => Err(KafkaError::TruncatedFrame {
                        received,
                        expected: announced(&self.buf).unwrap_or(SIZE_PREFIX_BYTES),
                    }),
                };
            }
        }
    }
}

fn announced(buf: &[u8]) -> Option<usize> {
    let prefix: [u8; SIZE_PREFIX_BYTES] = buf.get(..SIZE_PREFIX_BYTES)?.try_into().ok()?;
    usize::try_from(i32::from_be_bytes(prefix))
        .ok()
        .map(|n| n + SIZE_PREFIX_BYTES)
}

/// Splits one complete frame off the front of `buf`. Checks the size prefix first; reserves room
/// for the rest of the frame only once the size is known to be within the limit.
pub fn split_frame(
    buf: &mut BytesMut,
    frame_bytes_max: usize,
) -> Result<Option<Bytes>, KafkaError> {
    let Some(prefix) = buf.get(..SIZE_PREFIX_BYTES) else {
        return Ok(None);
    };
    let size = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    let size = check_size(size, frame_bytes_max)?;
    let total = SIZE_PREFIX_BYTES + size;
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    buf.advance(SIZE_PREFIX_BYTES);
    Ok(Some(buf.split_to(size).freeze()))
}

fn check_size(size: i32, frame_bytes_max: usize) -> Result<usize, KafkaError> {
    let Ok(size) = usize::try_from(size) else {
        return Err(KafkaError::FrameTooSmall {
            size: size.into(),
            min: REQUEST_BYTES_MIN,
        });
    };
    if size < REQUEST_BYTES_MIN {
        return Err(KafkaError::FrameTooSmall {
            size: size as i64,
            min: REQUEST_BYTES_MIN,
        });
    }
    if size > frame_bytes_max {
        return Err(KafkaError::FrameTooLarge {
            size: size as i64,
            max: frame_bytes_max,
        });
    }
    Ok(size)
}

/// Encodes a response frame: size prefix, response header of `header_version` carrying
/// `correlation_id`, then `body` encoded for `version`.
pub fn encode_response<M: Encodable>(
    api_key: i16,
    version: i16,
    header_version: i16,
    correlation_id: i32,
    body: &M,
) -> Result<Bytes, KafkaError> {
    let encode_err = |reason: String| KafkaError::Encode {
        api_key,
        version,
        reason,
    };
    let body_size = body
        .compute_size(version)
        .map_err(|e| encode_err(e.to_string()))?;
    let mut out = BytesMut::with_capacity(SIZE_PREFIX_BYTES + 5 + body_size);
    out.put_i32(0);
    out.put_i32(correlation_id);
    if header_version >= 1 {
        out.put_u8(0); // no tagged fields in the response header
    }
    body.encode(&mut out, version)
        .map_err(|e| encode_err(e.to_string()))?;
    let size = i32::try_from(out.len() - SIZE_PREFIX_BYTES)
        .map_err(|_| encode_err(format!("response of {} bytes is too large", out.len())))?;
    out[..SIZE_PREFIX_BYTES].copy_from_slice(&size.to_be_bytes());
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(body: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_i32(body.len() as i32);
        b.put_slice(body);
        b
    }

    #[test]
    fn splits_complete_frames_and_waits_for_partial_ones() {
        let mut buf = framed(b"12345678");
        buf.put_slice(&framed(b"abcdefghij")[..7]);
        assert_eq!(
            split_frame(&mut buf, 100).expect("valid"),
            Some(Bytes::from_static(b"12345678"))
        );
        assert_eq!(split_frame(&mut buf, 100).expect("valid"), None);
        buf.put_slice(b"defghij");
        assert_eq!(
            split_frame(&mut buf, 100).expect("valid"),
            Some(Bytes::from_static(b"abcdefghij"))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn refuses_oversized_frames_before_reserving() {
        let mut buf = BytesMut::with_capacity(16);
        buf.put_i32(1 << 30);
        let before = buf.capacity();
        let err = split_frame(&mut buf, 1024).expect_err("too large");
        assert!(matches!(err, KafkaError::FrameTooLarge { size, max: 1024 } if size == 1 << 30));
        assert_eq!(
            buf.capacity(),
            before,
            "no buffer reserved for a refused frame"
        );
    }

    #[test]
    fn refuses_negative_and_tiny_sizes() {
        let mut buf = BytesMut::new();
        buf.put_i32(-5);
        assert!(matches!(
            split_frame(&mut buf, 1024),
            Err(KafkaError::FrameTooSmall { size: -5, .. })
        ));
        let mut buf = framed(b"1234567");
        assert!(matches!(
            split_frame(&mut buf, 1024),
            Err(KafkaError::FrameTooSmall { size: 7, .. })
        ));
    }

    #[tokio::test]
    async fn reader_reports_truncation_and_clean_eof() {
        let mut data = framed(b"12345678").to_vec();
        let mut reader = FrameReader::new(&data[..], 1024);
        assert!(reader.next_frame().await.expect("frame").is_some());
        assert!(reader.next_frame().await.expect("eof").is_none());
        data.truncate(6);
        let mut reader = FrameReader::new(&data[..], 1024);
        let err = reader.next_frame().await.expect_err("truncated");
        assert!(matches!(
            err,
            KafkaError::TruncatedFrame {
                received: 6,
                expected: 12
            }
        ));
    }
}
