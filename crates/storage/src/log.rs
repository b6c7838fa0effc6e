//! The partition log: an ordered list of segments, the last of which is active.

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::config::{FlushPolicy, LogConfig, Retention};
use crate::error::{Result, StorageError};
use crate::segment::{self, AppendInfo, Growth, Segment};
use skein_record::{self as batch, Batch};

/// A wall clock in ms since the Unix epoch; replaceable for tests.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    })
}

/// Batches read from the log: whole batches, as one zero-copy slice of a segment's map.
#[derive(Debug, Clone)]
pub struct ReadSlice {
    /// Concatenated batches (possibly including Raft-internal batches, which consumers skip).
    pub bytes: Bytes,
    /// The offset to read from next: one past the last record of the slice, or the requested
    /// offset when the slice is empty.
    pub next_offset: u64,
}

/// A flush split in two, so that the fsync can run without holding the log's lock:
/// [`PartitionLog::begin_flush`] (under the lock), [`FlushTicket::sync`] (without it), then
/// [`PartitionLog::complete_flush`] (under the lock again). Appends may go on meanwhile; they are
/// covered by the next flush.
#[derive(Debug)]
pub struct FlushTicket {
    file: Arc<File>,
    segment_base: u64,
    size: u64,
    next_offset: u64,
    next_index: u64,
    generation: u64,
}

impl FlushTicket {
    /// fdatasync of the segment file the ticket covers.
    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }

    /// The offset up to which (exclusive) the ticket makes records durable.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// The Raft index up to which (exclusive) the ticket makes entries durable.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }
}

/// A prefix of the log that retention wants gone: whole sealed segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPoint {
    /// The log start offset after deletion.
    pub offset: u64,
    /// Raft index of the last entry that would be deleted.
    pub last_index: u64,
    /// Segments that would be deleted.
    pub segments: usize,
}

/// A segmented, mmap-backed partition log.
///
/// Positions and their invariant: `log_start_offset <= flushed_offset <= next_offset` (record
/// offsets) and `first_index <= flushed_index <= next_index` (Raft indexes). `append` advances the
/// `next_*` positions; only `flush` advances the `flushed_*` positions; truncation may move all of
/// them back. Appends must continue the Raft index sequence exactly; record offsets are assigned by
/// the log (the previous entry's next offset), so every replica stamps the same offsets.
///
/// Reads take `&self` and return zero-copy slices; writes take `&mut self`. Wrap the log in a
/// lock to share it between threads.
pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    segments: VecDeque<Segment>,
    log_start_offset: u64,
    flushed_offset: u64,
    flushed_index: u64,
    unflushed_bytes: u64,
    unflushed_since: Option<Instant>,
    poisoned: Option<String>,
    clock: Clock,
    /// Bumped by every truncation and reset, so that a flush begun before one does not claim
    /// durability for entries written after it.
    generation: u64,
    /// Test hook: the next flush fails as if fsync had returned EIO.
    #[cfg(test)]
    fail_next_flush: bool,
}

impl std::fmt::Debug for PartitionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionLog")
            .field("dir", &self.dir)
            .field("log_start_offset", &self.log_start_offset)
            .field("next_offset", &self.next_offset())
            .field("next_index", &self.next_index())
            .field("segments", &self.segments.len())
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(format!("fsync directory {}", dir.display()), e))
}

/// A cut made by [`PartitionLog::open_repairing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repair {
    /// The segment holding the first damaged batch.
    pub segment: PathBuf,
    /// Byte position of that batch in the segment: the log now ends there.
    pub position: u64,
    /// What was wrong with it.
    pub reason: String,
    /// Where the cut bytes and the later segments were moved.
    pub quarantine: PathBuf,
}

/// Moves `<name>` from `dir` into `quarantine`, under a new name if one is taken.
fn quarantine_file(dir: &Path, quarantine: &Path, name: &str) -> Result<()> {
    let from = dir.join(name);
    let mut to = quarantine.join(name);
    let mut n = 1;
    while to.exists() {
        to = quarantine.join(format!("{name}.{n}"));
        n += 1;
    }
    std::fs::rename(&from, &to)
        .map_err(|e| StorageError::io(format!("move {} to {}", from.display(), to.display()), e))
}

/// Cuts the log in `dir` right before byte `position` of `segment`: the bytes from there to
/// the segment's end are copied into `quarantine/`, the segment file is truncated, and every
/// later segment (log and index files) is moved into `quarantine/`. Returns the quarantine.
fn cut_before(dir: &Path, segment: &Path, position: u64) -> Result<PathBuf> {
    let quarantine = dir.join("quarantine");
    std::fs::create_dir_all(&quarantine)
        .map_err(|e| StorageError::io(format!("create {}", quarantine.display()), e))?;
    let name = segment
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            StorageError::io(
                format!("repair {}", segment.display()),
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a segment file name"),
            )
        })?;
    let Some((base, _)) = segment::parse_file_name(name) else {
        return Err(StorageError::io(
            format!("repair {}", segment.display()),
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a segment file name"),
        ));
    };
    let entries = std::fs::read_dir(dir)
        .map_err(|e| StorageError::io(format!("list log directory {}", dir.display()), e))?;
    let mut later = Vec::new();
    for entry in entries {
        let entry = entry
            .map_err(|e| StorageError::io(format!("list log directory {}", dir.display()), e))?;
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        if segment::parse_file_name(file).is_some_and(|(b, _)| b > base) {
            later.push(file.to_owned());
        }
    }
    for file in &later {
        quarantine_file(dir, &quarantine, file)?;
    }
    // Keep the damaged tail for inspection, then cut it off.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(segment)
        .map_err(|e| StorageError::io(format!("open {}", segment.display()), e))?;
    let len = f
        .metadata()
        .map_err(|e| StorageError::io(format!("stat {}", segment.display()), e))?
        .len();
    if position < len {
        let tail = quarantine.join(format!("{name}.from-{position}"));
        let mut src = &f;
        std::io::Seek::seek(&mut src, std::io::SeekFrom::Start(position))
            .map_err(|e| StorageError::io(format!("seek {}", segment.display()), e))?;
        let mut out = std::fs::File::create(&tail)
            .map_err(|e| StorageError::io(format!("create {}", tail.display()), e))?;
        std::io::copy(&mut src, &mut out)
            .and_then(|_| out.sync_all())
            .map_err(|e| {
                StorageError::io(format!("copy damaged bytes to {}", tail.display()), e)
            })?;
        f.set_len(position)
            .and_then(|()| f.sync_all())
            .map_err(|e| StorageError::io(format!("truncate {}", segment.display()), e))?;
    }
    sync_dir(&quarantine)?;
    sync_dir(dir)?;
    Ok(quarantine)
}

impl PartitionLog {
    /// Opens (or creates) the log in `dir`, recovering it (see the crate docs).
    pub fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<Self> {
        Self::open_with_clock(dir, config, system_clock())
    }

    /// Like [`PartitionLog::open`] with an explicit wall clock.
    pub fn open_with_clock(dir: impl AsRef<Path>, config: LogConfig, clock: Clock) -> Result<Self> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let _span = tracing::info_span!("open_log", dir = %dir.display()).entered();
        std::fs::create_dir_all(&dir)
            .map_err(|e| StorageError::io(format!("create log directory {}", dir.display()), e))?;
        let now = clock();
        let mut logs = Vec::new();
        let mut others = Vec::new();
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| StorageError::io(format!("list log directory {}", dir.display()), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| {
                StorageError::io(format!("list log directory {}", dir.display()), e)
            })?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            match segment::parse_file_name(name) {
                Some((base, "log")) => logs.push(base),
                Some((base, "index" | "timeindex")) => others.push((base, name.to_owned())),
                _ => {}
            }
        }
        logs.sort_unstable();
        // Index files whose log is gone are leftovers of an interrupted deletion.
        let mut removed_orphans = false;
        for (base, name) in others {
            if logs.binary_search(&base).is_err() {
                let p = dir.join(&name);
                std::fs::remove_file(&p)
                    .map_err(|e| StorageError::io(format!("remove orphan {}", p.display()), e))?;
                removed_orphans = true;
            }
        }
        if removed_orphans {
            sync_dir(&dir)?;
        }

        let interval = u64::from(config.index_interval_bytes);
        let mut segments: VecDeque<Segment> = VecDeque::with_capacity(logs.len().max(1));
        for (i, base) in logs.iter().enumerate() {
            let sealed = i + 1 < logs.len();
            let expected_index = segments.back().map(|s| s.next_index);
            let seg = Segment::open(
                &dir,
                *base,
                sealed,
                Growth::of(&config),
                expected_index,
                interval,
                now,
            )?;
            if sealed && config.verify_on_open {
                seg.verify()?;
            }
            if let Some(prev) = segments.back() {
                if prev.next_offset != seg.base_offset || prev.next_index != seg.base_index() {
                    return Err(StorageError::SegmentGap {
                        segment: seg.log_path.clone(),
                        found: seg.base_offset,
                        expected: prev.next_offset,
                        found_index: seg.base_index(),
                        expected_index: prev.next_index,
                    });
                }
            }
            segments.push_back(seg);
        }
        if segments.is_empty() {
            let seg = Segment::create(&dir, 0, 0, Growth::of(&config), interval, now)?;
            segments.push_back(seg);
            sync_dir(&dir)?;
        }
        let first = segments.front().map_or(0, |s| s.base_offset);
        let (next_offset, next_index) = segments
            .back()
            .map_or((0, 0), |s| (s.next_offset, s.next_index));
        tracing::info!(
            segments = segments.len(),
            log_start_offset = first,
            next_offset,
            next_index,
            "opened partition log"
        );
        Ok(PartitionLog {
            dir,
            config,
            segments,
            log_start_offset: first,
            flushed_offset: next_offset,
            flushed_index: next_index,
            unflushed_bytes: 0,
            unflushed_since: None,
            poisoned: None,
            clock,
            generation: 0,
            #[cfg(test)]
            fail_next_flush: false,
        })
    }

    /// Opens the log like [`PartitionLog::open`], but repairs damage instead of refusing to
    /// open: when a batch is corrupt (a flipped bit, a sealed segment cut short, a gap between
    /// segments), the log is cut right before it. The bytes from the damaged batch to the end of
    /// its segment and every later segment are moved into `quarantine/` in the log directory
    /// (kept for inspection, never read again), and the log reopens ending at the last intact
    /// batch. Returns what was cut, in the order it was found.
    ///
    /// The caller must get the cut entries back from elsewhere: a Raft replica's leader sends
    /// them again, because the replica's log now ends earlier. Nothing damaged is ever served.
    pub fn open_repairing(dir: impl AsRef<Path>, config: LogConfig) -> Result<(Self, Vec<Repair>)> {
        let dir = dir.as_ref();
        let mut repairs: Vec<Repair> = Vec::new();
        loop {
            let (segment, position, reason) = match Self::open(dir, config.clone()) {
                Ok(log) => return Ok((log, repairs)),
                Err(StorageError::CorruptBatch {
                    segment,
                    position,
                    reason,
                }) => (segment, position, reason),
                Err(StorageError::SegmentGap {
                    segment,
                    found,
                    expected,
                    ..
                }) => (
                    segment,
                    0,
                    format!(
                        "segment starts at offset {found}, the previous one ends at {expected}"
                    ),
                ),
                Err(e) => return Err(e),
            };
            if repairs
                .iter()
                .any(|r| r.segment == segment && r.position == position)
            {
                return Err(StorageError::CorruptBatch {
                    segment,
                    position,
                    reason: format!("{reason} (still there after cutting the log before it)"),
                });
            }
            tracing::error!(
                segment = %segment.display(),
                position,
                %reason,
                "damaged batch: cutting the log before it; its replicas must send the rest again"
            );
            let quarantine = cut_before(dir, &segment, position)?;
            repairs.push(Repair {
                segment,
                position,
                reason,
                quarantine,
            });
        }
    }

    fn check_poisoned(&self) -> Result<()> {
        match &self.poisoned {
            Some(cause) => Err(StorageError::Poisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Records a fatal failure; every later call returns [`StorageError::Poisoned`].
    fn poison(&mut self, err: StorageError) -> StorageError {
        tracing::error!(dir = %self.dir.display(), error = %err, "partition log poisoned");
        self.poisoned = Some(err.to_string());
        err
    }

    fn active(&self) -> &Segment {
        self.segments
            .back()
            .expect("invariant: a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .back_mut()
            .expect("invariant: a log always has an active segment")
    }

    /// The directory of this log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration in force.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the configuration of the open log, after [`LogConfig::validate`]; an invalid
    /// `config` is refused and the old one stays. Every setting may change; each applies from
    /// the next decision that reads it, and nothing already written is rewritten:
    /// - `segment_bytes_max`, `segment_age_max`: the next append's roll decision (an active
    ///   segment already beyond a lowered limit is sealed on the next append) and the growth
    ///   steps of the active segment's file (`preallocate`, `preallocate_step_bytes` too);
    /// - `batch_bytes_max`: the next append;
    /// - `flush`: when it changes, everything pending is fsynced first under the old policy's
    ///   promise (a switch to `Never` or a slower group commit strands nothing), then the new
    ///   policy decides the following flushes;
    /// - `retention`: the next [`PartitionLog::retention_point`];
    /// - `index_interval_bytes`: the next index entries; `verify_on_open`: the next open.
    ///
    /// The fsync can fail like [`PartitionLog::flush`]: it poisons the log.
    pub fn set_config(&mut self, config: LogConfig) -> Result<()> {
        self.check_poisoned()?;
        config.validate()?;
        if config.flush != self.config.flush {
            self.flush()?;
        }
        let (growth, interval) = (Growth::of(&config), u64::from(config.index_interval_bytes));
        for seg in &mut self.segments {
            seg.reconfigure(growth, interval);
        }
        tracing::info!(dir = %self.dir.display(), ?config, "log configuration changed");
        self.config = config;
        Ok(())
    }

    /// First offset a reader may ask for.
    pub fn log_start_offset(&self) -> u64 {
        self.log_start_offset
    }

    /// The log end offset: the offset the next record will get.
    pub fn next_offset(&self) -> u64 {
        self.active().next_offset
    }

    /// Raft index of the first entry still on disk.
    pub fn first_index(&self) -> u64 {
        self.segments.front().map_or(0, |s| s.base_index())
    }

    /// Raft index the next appended entry must have.
    pub fn next_index(&self) -> u64 {
        self.active().next_index
    }

    /// Term and index of the last entry, if the log has one.
    pub fn last_entry(&self) -> Option<(u64, u64)> {
        let term = self.segments.iter().rev().find_map(|s| s.last_term)?;
        Some((term, self.next_index() - 1))
    }

    /// Offset up to which (exclusive) appended data is durable.
    pub fn flushed_offset(&self) -> u64 {
        self.flushed_offset
    }

    /// Raft index up to which (exclusive) appended entries are durable.
    pub fn flushed_index(&self) -> u64 {
        self.flushed_index
    }

    /// Number of segments.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Total bytes of batches in the log.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    /// True once a write or fsync has failed.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// Appends a data batch as the next Raft entry, with the last entry's term.
    /// For logs used without Raft (tools, tests, benchmarks).
    pub fn append(&mut self, batch: &[u8]) -> Result<AppendInfo> {
        let term = self.last_entry().map_or(0, |(t, _)| t);
        let index = self.next_index();
        self.append_entry(batch, term, index)
    }

    /// Appends one whole batch as Raft entry `(term, index)`.
    ///
    /// The batch must be valid (CRC included) and no larger than `batch_bytes_max`; `index` must
    /// be [`PartitionLog::next_index`] and `term` at least the last entry's. The log stamps the
    /// base offset, term and index and writes the bytes; the write is durable after the next
    /// [`PartitionLog::flush`]. Bad input leaves the log unchanged; a failed write poisons it.
    pub fn append_entry(&mut self, batch: &[u8], term: u64, index: u64) -> Result<AppendInfo> {
        self.check_poisoned()?;
        if batch.len() > self.config.batch_bytes_max as usize {
            return Err(StorageError::BatchTooLarge {
                size: batch.len(),
                max: self.config.batch_bytes_max,
            });
        }
        let header = batch::validate(batch)?;
        let epoch = i32::try_from(term).map_err(|_| StorageError::TermTooLarge { term })?;
        let next_index = self.next_index();
        if index != next_index {
            return Err(StorageError::NonContiguousIndex {
                expected: next_index,
                got: index,
            });
        }
        if let Some((last, _)) = self.last_entry() {
            if term < last {
                return Err(StorageError::TermRegression { last, got: term });
            }
        }
        let now = (self.clock)();
        let len = batch.len() as u64;
        let must_roll = {
            let a = self.active();
            let full = a.size + len > self.config.segment_bytes_max;
            let old = self
                .config
                .segment_age_max
                .is_some_and(|age| now.saturating_sub(a.rolled_at_ms) >= age.as_millis() as i64);
            a.has_records() && (full || old)
        };
        if must_roll {
            self.roll(now)?;
        }
        let seg = self.active_mut();
        let result = seg.append(batch, &header, epoch, index);
        let info = match result {
            Ok(info) => info,
            Err(e) => {
                let e = StorageError::io(
                    format!("append to segment {}", self.active().log_path.display()),
                    e,
                );
                return Err(self.poison(e));
            }
        };
        self.unflushed_bytes += len;
        if self.unflushed_since.is_none() {
            self.unflushed_since = Some(Instant::now());
        }
        if self.config.flush == FlushPolicy::EveryBatch {
            self.flush()?;
        }
        Ok(info)
    }

    /// Seals the active segment and starts a new one at the log end.
    fn roll(&mut self, now: i64) -> Result<()> {
        self.flush()?;
        let r = self.active_mut().seal();
        if let Err(e) = r {
            return Err(self.poison(e));
        }
        let (base, index) = (self.next_offset(), self.next_index());
        let seg = Segment::create(
            &self.dir,
            base,
            index,
            Growth::of(&self.config),
            u64::from(self.config.index_interval_bytes),
            now,
        );
        let seg = match seg {
            Ok(s) => s,
            Err(e) => return Err(self.poison(e)),
        };
        tracing::debug!(dir = %self.dir.display(), base_offset = base, "rolled segment");
        self.segments.push_back(seg);
        if let Err(e) = sync_dir(&self.dir) {
            return Err(self.poison(e));
        }
        Ok(())
    }

    /// Makes every appended batch durable: fdatasync of the active segment, then the index
    /// entries that point at the newly durable bytes. A failure poisons the log.
    pub fn flush(&mut self) -> Result<()> {
        self.check_poisoned()?;
        if !self.has_unflushed() {
            return Ok(());
        }
        let r = self.active_mut().flush();
        #[cfg(test)]
        let r = if std::mem::take(&mut self.fail_next_flush) {
            Err(std::io::Error::from_raw_os_error(libc::EIO))
        } else {
            r
        };
        if let Err(e) = r {
            let e = StorageError::io(
                format!("fsync segment {}", self.active().log_path.display()),
                e,
            );
            return Err(self.poison(e));
        }
        self.flushed_offset = self.next_offset();
        self.flushed_index = self.next_index();
        self.unflushed_bytes = 0;
        self.unflushed_since = None;
        Ok(())
    }

    /// True when appended bytes are not known to be durable yet.
    fn has_unflushed(&self) -> bool {
        self.unflushed_bytes > 0 || self.flushed_index != self.next_index()
    }

    /// First half of a flush that runs its fsync outside the log's lock. Returns `None` when
    /// nothing is pending. The pending window restarts: appends after this call are covered by
    /// the next flush, not by this ticket.
    pub fn begin_flush(&mut self) -> Result<Option<FlushTicket>> {
        self.check_poisoned()?;
        if !self.has_unflushed() {
            return Ok(None);
        }
        let a = self.active();
        let t = FlushTicket {
            file: a.file(),
            segment_base: a.base_offset,
            size: a.size,
            next_offset: a.next_offset,
            next_index: a.next_index,
            generation: self.generation,
        };
        self.unflushed_bytes = 0;
        self.unflushed_since = None;
        Ok(Some(t))
    }

    /// Second half of a split flush: records the fsync's outcome. An error poisons the log; on
    /// success the flushed positions advance to the ticket's (unless the log was truncated or
    /// reset meanwhile) and the index entries that now point at durable bytes are written.
    pub fn complete_flush(
        &mut self,
        ticket: FlushTicket,
        outcome: std::io::Result<()>,
    ) -> Result<()> {
        self.check_poisoned()?;
        if let Err(e) = outcome {
            let e = StorageError::io(
                format!("fsync segment at base offset {}", ticket.segment_base),
                e,
            );
            return Err(self.poison(e));
        }
        if ticket.generation != self.generation {
            return Ok(());
        }
        self.flushed_offset = self.flushed_offset.max(ticket.next_offset);
        self.flushed_index = self.flushed_index.max(ticket.next_index);
        let seg = self
            .segments
            .iter_mut()
            .find(|s| s.base_offset == ticket.segment_base);
        if let Some(seg) = seg {
            if !seg.is_sealed() {
                if let Err(e) = seg.write_index_below(ticket.size) {
                    let e =
                        StorageError::io(format!("write index of {}", seg.log_path.display()), e);
                    return Err(self.poison(e));
                }
            }
        }
        Ok(())
    }

    /// When the flush policy next wants a flush, if anything is pending.
    pub fn flush_deadline(&self) -> Option<Instant> {
        let since = self.unflushed_since?;
        match self.config.flush {
            FlushPolicy::EveryBatch => Some(since),
            FlushPolicy::GroupCommit { interval, bytes } => {
                if self.unflushed_bytes >= bytes {
                    Some(since)
                } else {
                    Some(since + interval)
                }
            }
            FlushPolicy::Never => None,
        }
    }

    /// Flushes if the policy says a flush is due at `now`. Returns whether it flushed.
    pub fn flush_if_due(&mut self, now: Instant) -> Result<bool> {
        match self.flush_deadline() {
            Some(d) if d <= now => self.flush().map(|()| true),
            _ => Ok(false),
        }
    }

    /// Reads whole batches starting with the one that holds `offset`, up to `max_bytes` (at
    /// least one batch when there is one).
    pub fn read(&self, offset: u64, max_bytes: u64) -> Result<ReadSlice> {
        self.read_upto(offset, max_bytes, u64::MAX)
    }

    /// Like [`PartitionLog::read`], returning no batch that reaches `upto` (exclusive), e.g. the
    /// high watermark.
    pub fn read_upto(&self, offset: u64, max_bytes: u64, upto: u64) -> Result<ReadSlice> {
        self.check_poisoned()?;
        let end = self.next_offset();
        if offset < self.log_start_offset || offset > end {
            return Err(StorageError::OffsetOutOfRange {
                requested: offset,
                start: self.log_start_offset,
                end,
            });
        }
        let mut seg_i = self.segments.partition_point(|s| s.base_offset <= offset);
        seg_i = seg_i.saturating_sub(1);
        loop {
            let seg = &self.segments[seg_i];
            let bytes = seg.read(offset, max_bytes, upto)?;
            // An offset at the very end of a sealed segment lives in the next one.
            if bytes.is_empty() && offset >= seg.next_offset && seg_i + 1 < self.segments.len() {
                seg_i += 1;
                continue;
            }
            let next_offset = last_next_offset(&bytes).unwrap_or(offset);
            return Ok(ReadSlice { bytes, next_offset });
        }
    }

    /// Entries with Raft index in `[from, to)`, in order (the `i`-th has Raft index `from + i`;
    /// batches do not carry their index), stopping after `max_bytes` (at least one entry when the
    /// range is not empty). Each is CRC-checked and returned without copying; its term is its
    /// leader epoch.
    pub fn entries(&self, from: u64, to: u64, max_bytes: u64) -> Result<Vec<Batch>> {
        self.check_poisoned()?;
        let (first, next) = (self.first_index(), self.next_index());
        if from >= to {
            return Ok(Vec::new());
        }
        if from < first || to > next {
            return Err(StorageError::IndexOutOfRange {
                requested: if from < first { from } else { to - 1 },
                first,
                next,
            });
        }
        let mut out = Vec::new();
        let mut at = from;
        let mut budget = max_bytes;
        let mut i = self
            .segments
            .partition_point(|s| s.base_index() <= from)
            .saturating_sub(1);
        while at < to && i < self.segments.len() {
            let seg = &self.segments[i];
            let stop = to.min(seg.next_index);
            if at < stop {
                let before = out.len();
                let took = seg.entries(at, stop, budget, &mut out)?;
                at += (out.len() - before) as u64;
                budget = budget.saturating_sub(took);
                if at < stop || budget == 0 {
                    break;
                }
            }
            i += 1;
        }
        Ok(out)
    }

    /// The Raft term of the entry with Raft index `index` (its stamped leader epoch).
    pub fn term_at(&self, index: u64) -> Result<u64> {
        let e = self.entry(index)?;
        Ok(u64::try_from(e.header().leader_epoch).unwrap_or(0))
    }

    /// The entry with Raft index `index`.
    pub fn entry(&self, index: u64) -> Result<Batch> {
        self.entries(index, index + 1, 0)?
            .pop()
            .ok_or(StorageError::IndexOutOfRange {
                requested: index,
                first: self.first_index(),
                next: self.next_index(),
            })
    }

    /// The first offset whose record timestamp is `>= ts` (not below the log start offset), or
    /// `None` when every record is older.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<u64>> {
        self.check_poisoned()?;
        for seg in &self.segments {
            if seg.next_offset <= self.log_start_offset {
                continue;
            }
            if let Some(o) = seg.offset_for_timestamp(ts)? {
                return Ok(Some(o.max(self.log_start_offset)));
            }
        }
        Ok(None)
    }

    /// Removes every entry with Raft index `>= index` (a diverging follower's uncommitted tail).
    /// Segments entirely after it are deleted; the one holding it is cut and becomes active.
    pub fn truncate_from_index(&mut self, index: u64) -> Result<()> {
        self.check_poisoned()?;
        let (first, next) = (self.first_index(), self.next_index());
        if index >= next {
            return Ok(());
        }
        if index < first {
            return Err(StorageError::IndexOutOfRange {
                requested: index,
                first,
                next,
            });
        }
        let _span = tracing::info_span!("truncate", dir = %self.dir.display(), index).entered();
        self.generation += 1;
        // Delete whole segments that start at or after `index`, newest first, but keep the first.
        while self.segments.len() > 1 && self.active().base_index() >= index {
            let seg = self
                .segments
                .pop_back()
                .expect("invariant: more than one segment");
            let path = seg.log_path.clone();
            if let Err(e) = seg.delete_files() {
                let e = StorageError::io(format!("delete segment {}", path.display()), e);
                return Err(self.poison(e));
            }
        }
        if let Err(e) = sync_dir(&self.dir) {
            return Err(self.poison(e));
        }
        let seg = self.active_mut();
        if index < seg.next_index {
            if let Err(e) = seg.truncate_from_index(index) {
                return Err(if e.is_corruption() { e } else { self.poison(e) });
            }
        } else if seg.is_sealed() {
            // The truncation point is exactly this segment's end (the segments after it were
            // deleted above): reopen it for appends.
            if let Err(e) = seg.unseal() {
                return Err(self.poison(e));
            }
        }
        self.flushed_offset = self.flushed_offset.min(self.next_offset());
        self.flushed_index = self.flushed_index.min(self.next_index());
        self.log_start_offset = self.log_start_offset.min(self.next_offset());
        Ok(())
    }

    /// Moves the log start offset forward to `offset` (retention or a purge) and deletes the
    /// sealed segments that lie entirely below it. Returns the number of segments deleted.
    pub fn advance_log_start(&mut self, offset: u64) -> Result<usize> {
        self.check_poisoned()?;
        let end = self.next_offset();
        if offset > end {
            return Err(StorageError::OffsetOutOfRange {
                requested: offset,
                start: self.log_start_offset,
                end,
            });
        }
        self.log_start_offset = self.log_start_offset.max(offset);
        let target = self.log_start_offset;
        self.delete_prefix_while(|s| s.next_offset <= target)
    }

    /// Deletes the sealed segments whose entries all have Raft index `<= index` (Raft purge) and
    /// moves the log start offset past them. Returns the number of segments deleted.
    pub fn purge_through_index(&mut self, index: u64) -> Result<usize> {
        self.check_poisoned()?;
        let n = self.delete_prefix_while(|s| s.next_index <= index.saturating_add(1))?;
        let first = self.segments.front().map_or(0, |s| s.base_offset);
        self.log_start_offset = self.log_start_offset.max(first);
        Ok(n)
    }

    fn delete_prefix_while(&mut self, pred: impl Fn(&Segment) -> bool) -> Result<usize> {
        let mut n = 0;
        while self.segments.len() > 1
            && self
                .segments
                .front()
                .is_some_and(|s| s.is_sealed() && pred(s))
        {
            let seg = self
                .segments
                .pop_front()
                .expect("invariant: more than one segment");
            let path = seg.log_path.clone();
            if let Err(e) = seg.delete_files() {
                let e = StorageError::io(format!("delete segment {}", path.display()), e);
                return Err(self.poison(e));
            }
            n += 1;
        }
        if n > 0 {
            if let Err(e) = sync_dir(&self.dir) {
                return Err(self.poison(e));
            }
            tracing::info!(dir = %self.dir.display(), segments = n, "deleted segments");
        }
        let first = self.segments.front().map_or(0, |s| s.base_offset);
        self.log_start_offset = self.log_start_offset.max(first);
        Ok(n)
    }

    /// Moves the log start offset forward to `offset` (at most to the log end) without deleting
    /// anything: reads below it are refused from now on. The segments below it go later, with a
    /// Raft purge ([`PartitionLog::purge_through_index`]). Returns the log start offset.
    pub fn raise_log_start(&mut self, offset: u64) -> u64 {
        self.log_start_offset = self.log_start_offset.max(offset.min(self.next_offset()));
        self.log_start_offset
    }

    /// The last Raft index of the longest prefix of whole sealed segments that lie entirely below
    /// `offset` (and are not the last segment): what a purge may delete for that log start.
    pub fn last_index_below(&self, offset: u64) -> Option<u64> {
        let n = self.segments.len();
        self.segments
            .iter()
            .take(n.saturating_sub(1))
            .take_while(|s| s.is_sealed() && s.next_offset <= offset)
            .last()
            .map(|s| s.next_index.saturating_sub(1))
    }

    /// The prefix of whole sealed segments that the retention policy wants deleted at `now_ms`.
    pub fn retention_point(&self, now_ms: i64) -> Option<RetentionPoint> {
        self.retention_point_with(self.config.retention, now_ms)
    }

    /// Like [`PartitionLog::retention_point`], with the policy `r` instead of the log's own
    /// (a topic's retention may change while the log is open). Time retention compares each
    /// sealed segment's newest record timestamp with `now_ms`.
    pub fn retention_point_with(&self, r: Retention, now_ms: i64) -> Option<RetentionPoint> {
        let mut total = self.size_bytes();
        let mut point = None;
        for (i, s) in self.segments.iter().enumerate() {
            if !s.is_sealed() {
                break;
            }
            let too_old = r
                .time
                .is_some_and(|t| s.max_timestamp < now_ms.saturating_sub(t.as_millis() as i64));
            let too_big = r.bytes.is_some_and(|b| total > b);
            if !(too_old || too_big) {
                break;
            }
            total -= s.size;
            point = Some(RetentionPoint {
                offset: s.next_offset,
                last_index: s.next_index.saturating_sub(1),
                segments: i + 1,
            });
        }
        point
    }

    /// Applies the retention policy now. Returns the number of segments deleted.
    pub fn apply_retention(&mut self) -> Result<usize> {
        match self.retention_point((self.clock)()) {
            Some(p) => self.advance_log_start(p.offset),
            None => Ok(0),
        }
    }

    /// Discards the whole log and starts it again empty at `next_offset` / `next_index` (a
    /// follower installing a snapshot beyond its log).
    pub fn reset(&mut self, next_offset: u64, next_index: u64) -> Result<()> {
        self.check_poisoned()?;
        self.generation += 1;
        while let Some(seg) = self.segments.pop_back() {
            let path = seg.log_path.clone();
            if let Err(e) = seg.delete_files() {
                let e = StorageError::io(format!("delete segment {}", path.display()), e);
                return Err(self.poison(e));
            }
        }
        let seg = Segment::create(
            &self.dir,
            next_offset,
            next_index,
            Growth::of(&self.config),
            u64::from(self.config.index_interval_bytes),
            (self.clock)(),
        );
        match seg {
            Ok(s) => self.segments.push_back(s),
            Err(e) => return Err(self.poison(e)),
        }
        if let Err(e) = sync_dir(&self.dir) {
            return Err(self.poison(e));
        }
        self.log_start_offset = next_offset;
        self.flushed_offset = next_offset;
        self.flushed_index = next_index;
        self.unflushed_bytes = 0;
        self.unflushed_since = None;
        Ok(())
    }
}

/// One past the last record offset of the batches in `bytes` (a read: no internal entries).
fn last_next_offset(bytes: &[u8]) -> Option<u64> {
    let mut pos = 0usize;
    let mut next = None;
    while pos < bytes.len() {
        let h = batch::BatchHeader::parse(&bytes[pos..]).ok()?;
        next = Some(h.next_offset());
        pos += h.batch_len as usize;
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use skein_record::BatchBuilder;

    fn one_batch() -> Bytes {
        let mut b = BatchBuilder::new(1);
        b.push(1, None, Some(b"v"), &[]);
        b.finish()
    }

    #[test]
    fn an_fsync_error_poisons_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = LogConfig {
            flush: FlushPolicy::Never,
            ..LogConfig::default()
        };
        let mut log = PartitionLog::open(dir.path(), config.clone()).expect("open");
        log.append(&one_batch()).expect("append");
        log.flush().expect("flush");
        log.append(&one_batch()).expect("append");
        log.fail_next_flush = true;
        assert!(matches!(log.flush(), Err(StorageError::Io { .. })));
        assert!(log.is_poisoned());
        // Every later call fails, reads included, and the flushed position did not move.
        assert!(matches!(log.flush(), Err(StorageError::Poisoned { .. })));
        assert!(matches!(
            log.append(&one_batch()),
            Err(StorageError::Poisoned { .. })
        ));
        assert!(matches!(
            log.read(0, 100),
            Err(StorageError::Poisoned { .. })
        ));
        assert_eq!(log.flushed_offset(), 1);
        drop(log);
        // Reopening recovers what reached the disk.
        let log = PartitionLog::open(dir.path(), config).expect("reopen");
        assert!(!log.is_poisoned());
        assert!(log.next_offset() >= 1);
    }

    #[test]
    fn a_split_flush_covers_exactly_what_was_appended_before_it_began() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = LogConfig {
            flush: FlushPolicy::Never,
            ..LogConfig::default()
        };
        let mut log = PartitionLog::open(dir.path(), config).expect("open");
        log.append(&one_batch()).expect("append");
        log.append(&one_batch()).expect("append");
        let ticket = log.begin_flush().expect("begin").expect("pending");
        log.append(&one_batch()).expect("append during the fsync");
        let r = ticket.sync();
        log.complete_flush(ticket, r).expect("complete");
        assert_eq!(log.flushed_offset(), 2);
        assert_eq!(log.flushed_index(), 2);
        assert!(
            log.flush_deadline().is_none(),
            "policy Never schedules nothing"
        );

        // A truncation between begin and complete voids the ticket's claim.
        let ticket = log.begin_flush().expect("begin").expect("pending");
        log.truncate_from_index(2).expect("truncate");
        log.append(&one_batch()).expect("append");
        let r = ticket.sync();
        log.complete_flush(ticket, r).expect("complete");
        assert_eq!(
            log.flushed_index(),
            2,
            "the entry written after the truncation is not durable yet"
        );
        log.flush().expect("flush");
        assert_eq!(log.flushed_index(), 3);

        // A failed fsync poisons.
        log.append(&one_batch()).expect("append");
        let ticket = log.begin_flush().expect("begin").expect("pending");
        let err = std::io::Error::from_raw_os_error(libc::EIO);
        assert!(log.complete_flush(ticket, Err(err)).is_err());
        assert!(log.is_poisoned());
    }

    /// A batch of one record whose value is `value_len` bytes.
    fn sized_batch(value_len: usize) -> Bytes {
        let mut b = BatchBuilder::new(1);
        b.push(1, None, Some(&vec![b'v'; value_len]), &[]);
        b.finish()
    }

    /// A small log that never flushes on its own and never preallocates.
    fn live_config() -> LogConfig {
        LogConfig {
            segment_bytes_max: 64 << 10,
            batch_bytes_max: 4096,
            flush: FlushPolicy::Never,
            preallocate: false,
            preallocate_step_bytes: 64 << 10,
            retention: Retention::default(),
            ..LogConfig::default()
        }
    }

    #[test]
    fn a_lowered_segment_size_seals_an_active_segment_already_beyond_it_on_the_next_append() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = live_config();
        let mut log = PartitionLog::open(dir.path(), config.clone()).expect("open");
        for _ in 0..4 {
            log.append(&sized_batch(2000)).expect("append");
        }
        assert_eq!(log.segment_count(), 1);
        assert!(log.size_bytes() > 4096);
        let lowered = LogConfig {
            segment_bytes_max: 4096,
            ..config.clone()
        };
        log.set_config(lowered).expect("lower segment.bytes");
        log.append(&sized_batch(10))
            .expect("append beyond the lowered limit");
        assert_eq!(log.segment_count(), 2, "the oversized segment was sealed");
        for _ in 0..4 {
            log.append(&sized_batch(2000)).expect("append");
        }
        // The small batch and one large one share a segment; two large ones (over 2 KiB each)
        // never fit in 4 KiB, so each later one starts a segment.
        assert_eq!(log.segment_count(), 5, "new segments roll at the new limit");
        log.set_config(config).expect("raise segment.bytes");
        for _ in 0..8 {
            log.append(&sized_batch(2000)).expect("append");
        }
        assert_eq!(log.segment_count(), 5, "no roll below the raised limit");
    }

    #[test]
    fn a_lowered_segment_size_caps_the_growth_steps_of_the_active_file() {
        let len_after_one_append = |lower: bool| {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut log = PartitionLog::open(dir.path(), live_config()).expect("open");
            if lower {
                let c = LogConfig {
                    segment_bytes_max: 16 << 10,
                    ..live_config()
                };
                log.set_config(c).expect("lower segment.bytes");
            }
            log.append(&one_batch()).expect("append");
            let path = dir.path().join(segment::file_name(0, "log"));
            std::fs::metadata(path).expect("stat segment").len()
        };
        assert_eq!(len_after_one_append(false), 64 << 10);
        assert_eq!(len_after_one_append(true), 16 << 10);
    }

    #[test]
    fn a_lowered_segment_age_seals_the_active_segment_on_the_next_append() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = Arc::new(std::sync::atomic::AtomicI64::new(1_000_000));
        let clock: Clock = {
            let now = now.clone();
            Arc::new(move || now.load(std::sync::atomic::Ordering::SeqCst))
        };
        let config = LogConfig {
            segment_age_max: Some(std::time::Duration::from_secs(3600)),
            ..live_config()
        };
        let mut log =
            PartitionLog::open_with_clock(dir.path(), config.clone(), clock).expect("open");
        log.append(&one_batch()).expect("append");
        now.fetch_add(10_000, std::sync::atomic::Ordering::SeqCst);
        log.append(&one_batch()).expect("append");
        assert_eq!(log.segment_count(), 1, "10 s is younger than segment.ms");
        let lowered = LogConfig {
            segment_age_max: Some(std::time::Duration::from_secs(5)),
            ..config
        };
        log.set_config(lowered).expect("lower segment.ms");
        log.append(&one_batch()).expect("append");
        assert_eq!(
            log.segment_count(),
            2,
            "10 s is older than the new segment.ms"
        );
    }

    #[test]
    fn a_lowered_batch_max_refuses_the_next_append_and_a_raised_one_accepts_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = live_config();
        let mut log = PartitionLog::open(dir.path(), config.clone()).expect("open");
        let batch = sized_batch(2000);
        log.append(&batch).expect("accepted under 4096");
        let lowered = LogConfig {
            batch_bytes_max: 1024,
            ..config.clone()
        };
        log.set_config(lowered).expect("lower max.batch.bytes");
        assert!(matches!(
            log.append(&batch),
            Err(StorageError::BatchTooLarge { max: 1024, .. })
        ));
        assert_eq!(
            log.next_index(),
            1,
            "a refused batch leaves the log unchanged"
        );
        log.set_config(config).expect("raise max.batch.bytes");
        log.append(&batch).expect("accepted again");
    }

    fn group_commit(interval: std::time::Duration, bytes: u64) -> LogConfig {
        LogConfig {
            flush: FlushPolicy::GroupCommit { interval, bytes },
            ..live_config()
        }
    }

    #[test]
    fn switching_to_every_batch_flushes_what_is_pending_and_then_every_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hour = std::time::Duration::from_secs(3600);
        let config = group_commit(hour, 1 << 30);
        let mut log = PartitionLog::open(dir.path(), config.clone()).expect("open");
        log.append(&one_batch()).expect("append");
        log.append(&one_batch()).expect("append");
        assert_eq!(
            log.flushed_offset(),
            0,
            "group commit waits for its interval"
        );
        let every = LogConfig {
            flush: FlushPolicy::EveryBatch,
            ..config
        };
        log.set_config(every).expect("switch to every batch");
        assert_eq!(log.flushed_offset(), 2, "the pending batches were flushed");
        assert!(log.flush_deadline().is_none());
        log.append(&one_batch()).expect("append");
        assert_eq!(
            log.flushed_offset(),
            3,
            "each later batch is flushed at once"
        );
    }

    #[test]
    fn switching_to_never_flushes_what_is_pending_and_schedules_nothing_after() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = group_commit(std::time::Duration::from_secs(3600), 1 << 30);
        let mut log = PartitionLog::open(dir.path(), config.clone()).expect("open");
        log.append(&one_batch()).expect("append");
        let never = LogConfig {
            flush: FlushPolicy::Never,
            ..config
        };
        log.set_config(never).expect("switch to never");
        assert_eq!(
            log.flushed_offset(),
            1,
            "appended under group commit, kept its promise"
        );
        log.append(&one_batch()).expect("append");
        assert_eq!(log.flushed_offset(), 1);
        assert!(log.flush_deadline().is_none());
    }

    #[test]
    fn a_changed_group_commit_interval_or_bytes_sets_the_next_flush_deadline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hour = std::time::Duration::from_secs(3600);
        let mut log = PartitionLog::open(dir.path(), group_commit(hour, 1 << 30)).expect("open");
        log.append(&one_batch()).expect("append");
        let soon = Instant::now() + hour / 2;
        assert!(log.flush_deadline().expect("pending") > soon);

        log.set_config(group_commit(hour, 1))
            .expect("lower flush.bytes");
        log.append(&one_batch()).expect("append");
        let due = log.flush_deadline().expect("pending");
        assert!(due <= Instant::now(), "one batch reaches flush.bytes");
        assert!(log.flush_if_due(Instant::now()).expect("flush"));

        let ms = std::time::Duration::from_millis(10);
        log.set_config(group_commit(ms, 1 << 30))
            .expect("lower flush.interval.ms");
        log.append(&one_batch()).expect("append");
        let due = log.flush_deadline().expect("pending");
        assert!(due <= Instant::now() + ms, "due within the new interval");
    }

    #[test]
    fn a_changed_retention_applies_to_the_next_retention_check() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = LogConfig {
            segment_bytes_max: 4096,
            ..live_config()
        };
        let mut log = PartitionLog::open(dir.path(), config.clone()).expect("open");
        for _ in 0..8 {
            log.append(&sized_batch(2000)).expect("append");
        }
        assert!(log.segment_count() > 2);
        assert_eq!(log.apply_retention().expect("retention"), 0, "none set");
        let bounded = LogConfig {
            retention: Retention {
                time: None,
                bytes: Some(4096),
            },
            ..config
        };
        log.set_config(bounded).expect("set retention.bytes");
        assert!(log.apply_retention().expect("retention") > 0);
        assert!(log.size_bytes() <= 4096 + 4096);
    }

    #[test]
    fn an_invalid_config_is_refused_and_the_old_one_stays() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = live_config();
        let mut log = PartitionLog::open(dir.path(), config.clone()).expect("open");
        let bad = LogConfig {
            segment_bytes_max: 1024,
            ..config.clone()
        };
        assert!(matches!(
            log.set_config(bad),
            Err(StorageError::InvalidConfig(_))
        ));
        assert_eq!(log.config(), &config);
    }
}
