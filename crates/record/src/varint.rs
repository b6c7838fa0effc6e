//! Kafka's zig-zag LEB128 varints: `varint` for 32-bit fields (at most 5 bytes) and `varlong`
//! for 64-bit ones (at most 10 bytes), as in `org.apache.kafka.common.utils.ByteUtils`.

use bytes::BufMut;

/// Longest encoding of a 32-bit varint.
pub const VARINT_LEN_MAX: usize = 5;
/// Longest encoding of a 64-bit varlong.
pub const VARLONG_LEN_MAX: usize = 10;

/// Writes `v` as a zig-zag varint.
pub fn put_varint(out: &mut impl BufMut, v: i32) {
    put_unsigned(out, ((v << 1) ^ (v >> 31)) as u32 as u64);
}

/// Writes `v` as a zig-zag varlong.
pub fn put_varlong(out: &mut impl BufMut, v: i64) {
    put_unsigned(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_unsigned(out: &mut impl BufMut, mut z: u64) {
    while z >= 0x80 {
        out.put_u8((z as u8) | 0x80);
        z >>= 7;
    }
    out.put_u8(z as u8);
}

/// Encoded length of `v` as a varint.
pub fn varint_len(v: i32) -> usize {
    unsigned_len(((v << 1) ^ (v >> 31)) as u32 as u64)
}

/// Encoded length of `v` as a varlong.
pub fn varlong_len(v: i64) -> usize {
    unsigned_len(((v << 1) ^ (v >> 63)) as u64)
}

fn unsigned_len(z: u64) -> usize {
    let bits = 64 - (z | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Reads a varint from `buf[*pos..]`, advancing `pos`. `None` when truncated, longer than
/// [`VARINT_LEN_MAX`] bytes or overflowing 32 bits.
pub fn get_varint(buf: &[u8], pos: &mut usize) -> Option<i32> {
    let z = get_unsigned(buf, pos, VARINT_LEN_MAX)?;
    let z = u32::try_from(z).ok()?;
    Some(((z >> 1) as i32) ^ -((z & 1) as i32))
}

/// Reads a varlong from `buf[*pos..]`, advancing `pos`. `None` when truncated, longer than
/// [`VARLONG_LEN_MAX`] bytes or overflowing 64 bits.
pub fn get_varlong(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let z = get_unsigned(buf, pos, VARLONG_LEN_MAX)?;
    Some(((z >> 1) as i64) ^ -((z & 1) as i64))
}

/// LEB128 of at most `len_max` bytes; rejects bits beyond 64.
fn get_unsigned(buf: &[u8], pos: &mut usize, len_max: usize) -> Option<u64> {
    let mut z: u64 = 0;
    for i in 0..len_max {
        let byte = *buf.get(*pos + i)?;
        let shift = 7 * i as u32;
        if shift == 63 && byte > 1 {
            return None;
        }
        z |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            *pos += i + 1;
            return Some(z);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varlong_round_trips_at_the_edges() {
        for v in [0i64, 1, -1, 63, -64, 64, i64::MAX, i64::MIN, 300, -300] {
            let mut b = Vec::new();
            put_varlong(&mut b, v);
            assert_eq!(b.len(), varlong_len(v), "len of {v}");
            let mut pos = 0;
            assert_eq!(get_varlong(&b, &mut pos), Some(v));
            assert_eq!(pos, b.len());
        }
    }

    #[test]
    fn varint_round_trips_at_the_edges() {
        for v in [0i32, 1, -1, 63, -64, 64, i32::MAX, i32::MIN, 300, -300] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "len of {v}");
            let mut pos = 0;
            assert_eq!(get_varint(&b, &mut pos), Some(v));
            assert_eq!(pos, b.len());
        }
    }

    #[test]
    fn rejects_long_truncated_and_overflowing_encodings() {
        assert_eq!(get_varlong(&[0xff; 11], &mut 0), None);
        assert_eq!(get_varlong(&[0xff; 3], &mut 0), None);
        // Ten bytes whose last carries more than bit 63.
        let mut over = [0xffu8; 10];
        over[9] = 0x02;
        assert_eq!(get_varlong(&over, &mut 0), None);
        // A varint of six bytes, and one of five whose value needs 33 bits.
        assert_eq!(
            get_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00], &mut 0),
            None
        );
        assert_eq!(get_varint(&[0xff, 0xff, 0xff, 0xff, 0x1f], &mut 0), None);
        let mut pos = 0;
        assert_eq!(get_varint(&[], &mut pos), None);
        assert_eq!(pos, 0);
    }
}
