//! Kafka-compatible partitioning: murmur2 of the key, exactly like the Java client's
//! `Utils.murmur2` and `Utils.toPositive(hash) % partitions`, so the same key lands on the same
//! partition number in Skein and in Kafka.

/// Kafka's murmur2 (seed `0x9747b28c`), returning the same (signed) value as the Java client.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    let len = data.len();
    // Java computes `seed ^ length` on ints: the length wraps to 32 bits.
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    // Java's switch on `length % 4` falls through from 3 to 2 to 1.
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `Utils.toPositive`: clears the sign bit (not `abs`, which overflows on `i32::MIN`).
pub fn to_positive(n: i32) -> u32 {
    (n & 0x7fff_ffff) as u32
}

/// The partition Kafka's default partitioner picks for a keyed record.
///
/// # Panics
/// Never: `partitions` must be non-zero, which callers check (a topic has at least one
/// partition); zero yields partition 0.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    if partitions == 0 {
        return 0;
    }
    to_positive(murmur2(key)) % partitions
}

/// A small xorshift generator for sticky partition choice (quality is irrelevant, speed and no
/// dependency matter). Seeded from the standard library's random hasher keys.
#[derive(Debug, Clone)]
pub(crate) struct XorShift(u64);

impl XorShift {
    pub(crate) fn from_entropy() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x5eed);
        XorShift(h.finish() | 1)
    }

    #[cfg(test)]
    pub(crate) fn seeded(seed: u64) -> Self {
        XorShift(seed | 1)
    }

    pub(crate) fn next_u32(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 32) as u32
    }

    /// A value in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u32) -> u32 {
        if n == 0 {
            0
        } else {
            self.next_u32() % n
        }
    }
}

/// Picks a new sticky partition for keyless records: a random one among `available` (partitions
/// with a known leader) or, when none is known, among all; different from `previous` when there
/// is a choice (Kafka's sticky partitioner).
pub(crate) fn next_sticky(
    rng: &mut XorShift,
    partitions: u32,
    available: &[u32],
    previous: Option<u32>,
) -> u32 {
    let all: Vec<u32>;
    let pool: &[u32] = if available.is_empty() {
        all = (0..partitions).collect();
        &all
    } else {
        available
    };
    if pool.is_empty() {
        return 0;
    }
    let candidates: Vec<u32> = pool
        .iter()
        .copied()
        .filter(|p| Some(*p) != previous)
        .collect();
    let pick_from = if candidates.is_empty() {
        pool
    } else {
        &candidates[..]
    };
    pick_from[rng.below(pick_from.len() as u32) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from Kafka's `UtilsTest.testMurmur2` and the Java client's results that other
    /// Kafka clients (Akka, librdkafka) test against.
    #[test]
    fn murmur2_matches_kafka_java_vectors() {
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
            (b"1", -1_993_445_489),
            (b"12", 126_087_238),
            (b"123", -267_702_483),
            (b"1234", -1_614_185_708),
            (b"12345", -1_188_365_604),
            (b"string-f-24-chars-length", 124_730_809),
            (b"string-fo-25-chars-length", 1_269_511_650),
            (b"string-foo-26-chars-length", 119_165_628),
            (b"string-last-27-chars-length", 1_089_971_754),
            (b"kafka", -798_503_068),
        ];
        for (input, expected) in cases {
            assert_eq!(
                murmur2(input),
                *expected,
                "murmur2({:?})",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn empty_key_hashes_like_java() {
        // Java: h = seed ^ 0, no tail, then the final mix.
        let mut h: u32 = 0x9747_b28c;
        h ^= h >> 13;
        h = h.wrapping_mul(0x5bd1_e995);
        h ^= h >> 15;
        assert_eq!(murmur2(b""), h as i32);
    }

    #[test]
    fn to_positive_clears_the_sign_bit() {
        assert_eq!(to_positive(-1), 0x7fff_ffff);
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(to_positive(5), 5);
    }

    #[test]
    fn keyed_partitioning_is_kafka_compatible_and_stable() {
        // toPositive(-973932308) = 1173551340; 1173551340 % 6 = 0, % 10 = 0, % 7 = 3.
        assert_eq!(partition_for_key(b"21", 6), 1_173_551_340 % 6);
        assert_eq!(partition_for_key(b"21", 7), 1_173_551_340 % 7);
        // "foobar": toPositive(-790332482) = 1357151166.
        assert_eq!(partition_for_key(b"foobar", 10), 1_357_151_166 % 10);
        for p in 1..20 {
            assert!(partition_for_key(b"some key", p) < p);
            assert_eq!(
                partition_for_key(b"some key", p),
                partition_for_key(b"some key", p)
            );
        }
        assert_eq!(partition_for_key(b"x", 0), 0);
    }

    #[test]
    fn sticky_choice_changes_partition_and_prefers_available() {
        let mut rng = XorShift::seeded(42);
        for _ in 0..100 {
            let p = next_sticky(&mut rng, 4, &[], Some(2));
            assert!(p < 4 && p != 2);
        }
        for _ in 0..100 {
            let p = next_sticky(&mut rng, 6, &[1, 3], Some(1));
            assert_eq!(p, 3);
        }
        assert_eq!(next_sticky(&mut rng, 1, &[], Some(0)), 0);
        assert_eq!(next_sticky(&mut rng, 0, &[], None), 0);
    }
}
