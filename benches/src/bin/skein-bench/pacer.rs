//! Even pacing for `--rate`: record `i` is due at `start + i / rate`.
//!
//! The schedule is absolute, so a producer that falls behind (a slow send, a late timer) catches
//! up by sending the records that are already due at once, and never drifts: after `t` seconds
//! exactly `rate * t` records (plus one) have been due. Latency is measured from each record's
//! due time, so stalls of the load generator are counted (no coordinated omission).

use std::time::{Duration, Instant};

/// The send schedule of one producer.
#[derive(Debug, Clone)]
pub struct Pacer {
    start: Instant,
    /// Nanoseconds between two records.
    interval_ns: f64,
    /// Records handed out so far.
    next: u64,
}

impl Pacer {
    /// A schedule of `rate` records/s starting at `start` (the first record is due at `start`).
    pub fn new(start: Instant, rate: f64) -> Self {
        assert!(rate > 0.0 && rate.is_finite(), "rate must be positive");
        Pacer {
            start,
            interval_ns: 1e9 / rate,
            next: 0,
        }
    }

    /// When record `i` is due.
    pub fn due_at(&self, i: u64) -> Instant {
        // f64 holds integers exactly up to 2^53 ns (104 days): plenty for a benchmark.
        self.start + Duration::from_nanos((i as f64 * self.interval_ns) as u64)
    }

    /// The due time of the next record; advances the schedule by one record.
    pub fn next_slot(&mut self) -> Instant {
        let at = self.due_at(self.next);
        self.next += 1;
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_evenly_spaced() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0, 1000.0);
        let slots: Vec<Instant> = (0..5).map(|_| p.next_slot()).collect();
        assert_eq!(slots[0], t0);
        for w in slots.windows(2) {
            assert_eq!(w[1] - w[0], Duration::from_millis(1));
        }
        assert_eq!(p.due_at(1000), t0 + Duration::from_secs(1));
    }

    #[test]
    fn the_schedule_does_not_drift() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0, 250_000.0);
        for _ in 0..2_500_000 {
            p.next_slot();
        }
        // Record 2 500 000 is due exactly 10 s after the start, whatever happened before.
        assert_eq!(p.next_slot() - t0, Duration::from_secs(10));
        assert_eq!(p.due_at(250), t0 + Duration::from_millis(1));
    }

    #[test]
    fn not_bursty_every_millisecond_gets_its_share() {
        // 10 000 records/s over one second: each 1 ms window holds 10 slots, never more than 11.
        let t0 = Instant::now();
        let mut p = Pacer::new(t0, 10_000.0);
        let mut per_ms = [0u32; 1000];
        for _ in 0..10_000 {
            let ms = (p.next_slot() - t0).as_millis() as usize;
            per_ms[ms] += 1;
        }
        assert!(per_ms.iter().all(|&n| n == 10), "{per_ms:?}");
    }

    #[test]
    fn fractional_rates_do_not_accumulate_error() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0, 3.0);
        for _ in 0..3_000 {
            p.next_slot();
        }
        // Slot 3000 is due exactly 1000 s after the start (to within float rounding).
        let d = p.next_slot() - t0;
        assert!(
            d.abs_diff(Duration::from_secs(1000)) < Duration::from_micros(1),
            "{d:?}"
        );
    }
}
