//! Configuration of a partition log.

use std::time::Duration;

use crate::error::{Result, StorageError};
use skein_record::HEADER_LEN;

/// When appended bytes are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// fsync after every appended batch.
    EveryBatch,
    /// Group commit: one fsync covers every batch appended since the last one. A flush is due
    /// when `interval` has passed since the oldest unflushed append, or when `bytes` are pending.
    GroupCommit {
        /// Longest time an appended batch may wait for its fsync.
        interval: Duration,
        /// Pending bytes that force a flush.
        bytes: u64,
    },
    /// Never fsync on the log's own initiative (the OS writes back); explicit `flush` still works.
    Never,
}

impl Default for FlushPolicy {
    fn default() -> Self {
        FlushPolicy::GroupCommit {
            interval: Duration::from_millis(2),
            bytes: 1 << 20,
        }
    }
}

/// Retention of sealed segments. The active segment is never deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// Delete a sealed segment once its newest record is older than this.
    pub time: Option<Duration>,
    /// Delete the oldest sealed segments while the log is larger than this many bytes.
    pub bytes: Option<u64>,
}

/// Settings of one partition log. [`LogConfig::validate`] checks the relations between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Size at which the active segment is sealed and a new one started.
    pub segment_bytes_max: u64,
    /// Age at which the active segment is sealed even if not full.
    pub segment_age_max: Option<Duration>,
    /// Largest batch accepted by `append`.
    pub batch_bytes_max: u32,
    /// Bytes of log between two sparse index entries.
    pub index_interval_bytes: u32,
    /// When appends are fsynced.
    pub flush: FlushPolicy,
    /// What sealed segments are kept.
    pub retention: Retention,
    /// Reserve the disk blocks of each growth step of the active segment with `fallocate`:
    /// appends inside a step then never fail for lack of space, and an `fdatasync` inside a step
    /// neither allocates blocks nor commits a new file size. When false, a step only extends the
    /// file (`set_len`): the file is sparse and takes blocks as bytes are written, which the file
    /// system then allocates at write-back, on the `fdatasync`.
    pub preallocate: bool,
    /// Largest step by which the active segment's file grows. The file starts empty and grows
    /// when an append needs room: by doubling from [`PREALLOCATE_FIRST_STEP_BYTES`], then by this
    /// many bytes at a time, never beyond `segment_bytes_max` (except for a single batch that
    /// needs more, which always fits). Disk use follows the data: an empty log's `.log` file takes
    /// no blocks, a log with a few small entries [`PREALLOCATE_FIRST_STEP_BYTES`], and a log at
    /// most one step more than its data. Each step costs one `fallocate`, one new memory map and
    /// one file-size update in the next `fdatasync`; larger steps make that rarer.
    pub preallocate_step_bytes: u64,
    /// Check every batch of every sealed segment (header, CRC, offset and index sequence) when
    /// the log is opened, instead of only the batches after the last index entry. Costs one read
    /// of the whole log at start-up; finds bit rot in old data before a reader or a follower
    /// is handed it (see [`crate::PartitionLog::open_repairing`]).
    pub verify_on_open: bool,
}

/// Positions in a segment are `u32` in the index files.
pub const SEGMENT_BYTES_LIMIT: u64 = u32::MAX as u64;

/// The first growth step of an active segment's file (smaller when `preallocate_step_bytes` is):
/// a replica whose log holds only a few Raft entries costs this much disk, not a whole step.
pub const PREALLOCATE_FIRST_STEP_BYTES: u64 = 64 << 10;

/// Smallest `preallocate_step_bytes`: one page, the unit of both the map and the file system.
pub const PREALLOCATE_STEP_BYTES_MIN: u64 = 4 << 10;

const _: () = assert!(PREALLOCATE_FIRST_STEP_BYTES >= PREALLOCATE_STEP_BYTES_MIN);
const _: () = assert!(PREALLOCATE_FIRST_STEP_BYTES.is_multiple_of(PREALLOCATE_STEP_BYTES_MIN));

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes_max: 256 << 20,
            segment_age_max: Some(Duration::from_secs(7 * 24 * 3600)),
            batch_bytes_max: 4 << 20,
            index_interval_bytes: 4096,
            flush: FlushPolicy::default(),
            retention: Retention {
                time: Some(Duration::from_secs(7 * 24 * 3600)),
                bytes: None,
            },
            preallocate: true,
            preallocate_step_bytes: 4 << 20,
            verify_on_open: true,
        }
    }
}

impl LogConfig {
    /// Checks every setting and the relations between them.
    pub fn validate(&self) -> Result<()> {
        let fail = |m: String| Err(StorageError::InvalidConfig(m));
        if self.segment_bytes_max > SEGMENT_BYTES_LIMIT {
            return fail(format!(
                "segment_bytes_max {} exceeds the limit of {} bytes",
                self.segment_bytes_max, SEGMENT_BYTES_LIMIT
            ));
        }
        if (self.batch_bytes_max as usize) < HEADER_LEN + 1 {
            return fail(format!(
                "batch_bytes_max {} is smaller than a batch header ({} bytes)",
                self.batch_bytes_max, HEADER_LEN
            ));
        }
        if u64::from(self.batch_bytes_max) > self.segment_bytes_max {
            return fail(format!(
                "batch_bytes_max {} exceeds segment_bytes_max {}: a maximal batch must fit in a segment",
                self.batch_bytes_max, self.segment_bytes_max
            ));
        }
        if !(PREALLOCATE_STEP_BYTES_MIN..=SEGMENT_BYTES_LIMIT)
            .contains(&self.preallocate_step_bytes)
        {
            return fail(format!(
                "preallocate_step_bytes {} is outside [{PREALLOCATE_STEP_BYTES_MIN}, {SEGMENT_BYTES_LIMIT}]",
                self.preallocate_step_bytes
            ));
        }
        if self.index_interval_bytes == 0 {
            return fail("index_interval_bytes must be at least 1".into());
        }
        if let FlushPolicy::GroupCommit { bytes, .. } = self.flush {
            if bytes == 0 {
                return fail("flush group-commit bytes must be at least 1".into());
            }
        }
        if self.segment_age_max == Some(Duration::ZERO) {
            return fail("segment_age_max must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        LogConfig::default().validate().expect("defaults are valid");
    }

    #[test]
    fn rejects_batch_larger_than_segment() {
        let c = LogConfig {
            segment_bytes_max: 1024,
            batch_bytes_max: 4096,
            ..LogConfig::default()
        };
        assert!(matches!(c.validate(), Err(StorageError::InvalidConfig(_))));
    }

    #[test]
    fn rejects_preallocation_steps_below_a_page_or_beyond_a_segment_position() {
        for step in [0, PREALLOCATE_STEP_BYTES_MIN - 1, SEGMENT_BYTES_LIMIT + 1] {
            let c = LogConfig {
                preallocate_step_bytes: step,
                ..LogConfig::default()
            };
            assert!(c.validate().is_err(), "step {step}");
        }
        // A step larger than a segment or smaller than a batch is fine: growth is capped at the
        // segment size and always makes room for the batch at hand.
        for step in [PREALLOCATE_STEP_BYTES_MIN, 1 << 30] {
            let c = LogConfig {
                preallocate_step_bytes: step,
                ..LogConfig::default()
            };
            c.validate().expect("valid step");
        }
    }

    #[test]
    fn rejects_oversized_segments() {
        let c = LogConfig {
            segment_bytes_max: 8 << 30,
            ..LogConfig::default()
        };
        assert!(c.validate().is_err());
    }
}
