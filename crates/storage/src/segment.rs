//! One segment of a partition log: a `.log` file of batches and its two sparse indexes.
//!
//! File descriptors: the active segment holds its `.log` file open (it writes and fsyncs it); a
//! sealed segment holds none, its reads go through the map, which outlives the descriptor.
//! Index files are opened only while they are read or written. Operations that write a sealed
//! segment's `.log` (a truncation reaching into it) open it again ([`Segment::unseal`]).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::config::{LogConfig, PREALLOCATE_FIRST_STEP_BYTES, PREALLOCATE_STEP_BYTES_MIN};
use crate::error::{Result, StorageError};
use crate::index::{IndexDamage, IndexEntry, OffsetIndex, TimeEntry, TimeIndex};
use crate::mmap;
use skein_record::{self as batch, Batch, BatchHeader, EntryKind, HEADER_LEN};

/// Width of the zero-padded base offset in file names.
const NAME_WIDTH: usize = 20;

/// `00000000000000001234.log` and friends.
pub(crate) fn file_name(base_offset: u64, ext: &str) -> String {
    format!("{base_offset:0NAME_WIDTH$}.{ext}")
}

/// Parses `00000000000000001234.log` into `(1234, "log")`.
pub(crate) fn parse_file_name(name: &str) -> Option<(u64, &str)> {
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != NAME_WIDTH || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, ext))
}

/// Opens an existing `.log` file for reading and writing.
fn open_log_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}

/// Opens an index file to write it, creating it when missing. The handle is closed again after
/// the write: index files are not held open.
fn open_index_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// Index files at most this long are read into memory when a sealed segment is opened; longer
/// ones are mapped. A map of a small file would cost a whole page and one of the process's
/// `vm.max_map_count` maps (65530 by default) for a few entries.
const INDEX_MAP_BYTES_MIN: u64 = PREALLOCATE_STEP_BYTES_MIN;

/// Loads one index file with `parse` (which gets the bytes and whether they are mapped): mapped
/// when `map` and the file is longer than [`INDEX_MAP_BYTES_MIN`], read into memory otherwise.
/// The file is closed on return; a map stays valid without it. A missing file is damage: the
/// caller rebuilds.
fn load_index<T>(
    path: &Path,
    map: bool,
    parse: impl FnOnce(Bytes, bool) -> Result<T, IndexDamage>,
) -> io::Result<Result<T, IndexDamage>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Err(IndexDamage::Missing)),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let Ok(n) = usize::try_from(len) else {
        return Ok(Err(IndexDamage::BadLength));
    };
    if map && len > INDEX_MAP_BYTES_MIN {
        return Ok(parse(mmap::map_bytes(&file, len)?, true));
    }
    let mut bytes = vec![0u8; n];
    file.read_exact_at(&mut bytes, 0)?;
    Ok(parse(Bytes::from(bytes), false))
}

/// When [`Segment::write_indexes`] fsyncs an index file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IndexSync {
    /// Never: entries on disk point at durable bytes, and recovery checks them anyway.
    Never,
    /// Each file this call writes.
    Written,
    /// Both files, written by this call or not (sealing: flushes wrote entries unsynced).
    Both,
}

/// Brings one index file up to date: opens it only when `dirty` or when `sync` asks for an
/// fsync of both files, runs `write`, fsyncs as `sync` says, and closes it.
fn update_index_file(
    path: &Path,
    dirty: bool,
    sync: IndexSync,
    write: impl FnOnce(&File) -> io::Result<()>,
) -> io::Result<()> {
    if !dirty && sync != IndexSync::Both {
        return Ok(());
    }
    let file = open_index_file(path)?;
    write(&file)?;
    if sync != IndexSync::Never {
        file.sync_all()?;
    }
    Ok(())
}

/// What the log learns about an entry it appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset stamped as the batch's base offset.
    pub base_offset: u64,
    /// One past the batch's last offset (the log end offset after this append).
    pub next_offset: u64,
    /// Raft term stamped.
    pub raft_term: u64,
    /// Raft index stamped.
    pub raft_index: u64,
}

/// How the active segment's file grows: see [`LogConfig::preallocate_step_bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Growth {
    /// Largest step.
    pub step_bytes_max: u64,
    /// Steps stop here (a single batch that needs more still gets it).
    pub segment_bytes_max: u64,
    /// `fallocate` each step (else only extend the file's length).
    pub allocate: bool,
}

impl Growth {
    pub fn of(config: &LogConfig) -> Self {
        Growth {
            step_bytes_max: config.preallocate_step_bytes,
            segment_bytes_max: config.segment_bytes_max,
            allocate: config.preallocate,
        }
    }

    /// The length a file of `len` bytes grows to so that `needed` bytes fit: one step more,
    /// the step doubling from [`PREALLOCATE_FIRST_STEP_BYTES`] up to `step_bytes_max`, rounded up
    /// to a page, not beyond `segment_bytes_max`, and at least `needed`.
    pub fn next_len(&self, len: u64, needed: u64) -> u64 {
        let step = len
            .max(PREALLOCATE_FIRST_STEP_BYTES)
            .min(self.step_bytes_max);
        let stepped = (len + step)
            .max(needed)
            .next_multiple_of(PREALLOCATE_STEP_BYTES_MIN);
        stepped.min(self.segment_bytes_max.max(len)).max(needed)
    }
}

/// Loads a segment's two index files ([`load_index`]; mapped only when `sealed`). When either
/// is damaged, both are rebuilt from the log: the result is then two empty tables and `true`.
/// Batches do not carry their Raft index, so the base index comes from the `.index` header, or,
/// when that is damaged, from `expected_base_index` (the previous segment's end); a first
/// segment without either is [`StorageError::LostBaseIndex`].
fn load_indexes(
    (log_path, index_path, time_path): (&Path, &Path, &Path),
    sealed: bool,
    expected_base_index: Option<u64>,
) -> Result<(OffsetIndex, TimeIndex, bool)> {
    let action = |what: &str| format!("open segment {}: {what}", log_path.display());
    let index = load_index(index_path, sealed, OffsetIndex::parse)
        .map_err(|e| StorageError::io(action("read .index"), e))?;
    let time_index = load_index(time_path, sealed, TimeIndex::parse)
        .map_err(|e| StorageError::io(action("read .timeindex"), e))?;
    let (index, time_index) = match (index, time_index) {
        (Ok(i), Ok(t)) => return Ok((i, t, false)),
        damaged => damaged,
    };
    let base_index = match (&index, expected_base_index) {
        (Ok(i), _) => i.base_index(),
        (Err(_), Some(b)) => b,
        (Err(why), None) => {
            return Err(StorageError::LostBaseIndex {
                segment: log_path.to_path_buf(),
                reason: format!("{why:?}"),
            })
        }
    };
    let why = index
        .err()
        .or(time_index.err())
        .unwrap_or(IndexDamage::Missing);
    tracing::warn!(segment = %log_path.display(), ?why, "rebuilding index files");
    Ok((OffsetIndex::new(base_index), TimeIndex::new(), true))
}

/// Where a scan of a segment ended.
#[derive(Debug)]
enum ScanEnd {
    /// Clean end: a zeroed header or the end of the file.
    Clean(u64),
    /// An invalid batch with no valid batch after it: a torn write.
    Torn(u64, String),
}

#[derive(Debug)]
pub(crate) struct Segment {
    pub base_offset: u64,
    pub next_offset: u64,
    pub next_index: u64,
    pub last_term: Option<u64>,
    /// Bytes of valid batches.
    pub size: u64,
    /// Length of the file and of the map (`>= size`; `== size` once sealed). The active segment
    /// grows it in steps ([`Growth`]).
    capacity: u64,
    growth: Growth,
    pub max_timestamp: i64,
    /// When the segment started, for rolling by age (ms since the epoch).
    pub rolled_at_ms: i64,
    /// Bytes of log between two sparse index entries.
    index_interval: u64,
    /// The open `.log` file: `Some` exactly while the segment is active. A sealed segment is
    /// read through `map` alone and holds no file descriptor.
    log: Option<Arc<File>>,
    map: Bytes,
    index: OffsetIndex,
    time_index: TimeIndex,
    pub log_path: PathBuf,
    index_path: PathBuf,
    time_path: PathBuf,
}

impl Segment {
    fn paths(dir: &Path, base_offset: u64) -> (PathBuf, PathBuf, PathBuf) {
        (
            dir.join(file_name(base_offset, "log")),
            dir.join(file_name(base_offset, "index")),
            dir.join(file_name(base_offset, "timeindex")),
        )
    }

    /// Creates a new, empty active segment (the caller fsyncs the directory). Its `.log` file
    /// is empty: the first append allocates the first step.
    pub fn create(
        dir: &Path,
        base_offset: u64,
        base_index: u64,
        growth: Growth,
        index_interval: u64,
        now_ms: i64,
    ) -> Result<Self> {
        let (log_path, index_path, time_path) = Self::paths(dir, base_offset);
        let action = |what: &str| format!("create segment {}: {what}", log_path.display());
        let log = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&log_path)
            .map(Arc::new)
            .map_err(|e| StorageError::io(action("open"), e))?;
        log.sync_all()
            .map_err(|e| StorageError::io(action("fsync"), e))?;
        let mut index = OffsetIndex::new(base_index);
        open_index_file(&index_path)
            .and_then(|f| {
                f.set_len(0)?;
                index.write_pending(&f)?;
                f.sync_all()
            })
            .map_err(|e| StorageError::io(action("write .index header"), e))?;
        let mut time_index = TimeIndex::new();
        open_index_file(&time_path)
            .and_then(|f| {
                f.set_len(0)?;
                // Records the file's length, so that flushes open it only to add entries.
                time_index.write_pending(&f)
            })
            .map_err(|e| StorageError::io(action("create .timeindex"), e))?;
        Ok(Segment {
            base_offset,
            next_offset: base_offset,
            next_index: base_index,
            last_term: None,
            size: 0,
            capacity: 0,
            growth,
            max_timestamp: i64::MIN,
            rolled_at_ms: now_ms,
            index_interval,
            log: Some(log),
            map: Bytes::new(),
            index,
            time_index,
            log_path,
            index_path,
            time_path,
        })
    }

    /// Opens an existing segment and recovers it.
    ///
    /// A sealed segment must be whole: every batch it is checked on must be valid and the last
    /// must end at the end of the file. The active segment is scanned from its last valid index
    /// entry; a torn tail is cut off, but an invalid batch followed by a valid one is corruption.
    /// `expected_base_index` (the previous segment's next Raft index; `None` for the first
    /// segment) is used when the `.index` file, which records the segment's base Raft index, is
    /// missing or damaged: batches do not carry their Raft index. A first segment whose base
    /// index is lost cannot be opened ([`StorageError::LostBaseIndex`]).
    ///
    /// The file may have any length: a step boundary, the full segment size (files written
    /// before the log grew in steps), or less after a crash. The active segment's file is
    /// trimmed to its valid data; the next append grows it again.
    pub fn open(
        dir: &Path,
        base_offset: u64,
        sealed: bool,
        growth: Growth,
        expected_base_index: Option<u64>,
        index_interval: u64,
        now_ms: i64,
    ) -> Result<Self> {
        let (log_path, index_path, time_path) = Self::paths(dir, base_offset);
        let action = |what: &str| format!("open segment {}: {what}", log_path.display());
        // A sealed segment is only read: its file is opened read-only and closed once mapped.
        let log = if sealed {
            File::open(&log_path)
        } else {
            open_log_rw(&log_path)
        }
        .map_err(|e| StorageError::io(action("open"), e))?;
        let file_len = log
            .metadata()
            .map_err(|e| StorageError::io(action("stat"), e))?
            .len();
        let map =
            mmap::map_bytes(&log, file_len).map_err(|e| StorageError::io(action("map"), e))?;
        let paths = (
            log_path.as_path(),
            index_path.as_path(),
            time_path.as_path(),
        );
        let (index, time_index, rebuild) = load_indexes(paths, sealed, expected_base_index)?;
        // The first batch, if any, tells the segment's age.
        let first = BatchHeader::parse(&map[..map.len().min(HEADER_LEN)]).ok();
        let mut seg = Segment {
            base_offset,
            next_offset: base_offset,
            next_index: index.base_index(),
            last_term: None,
            size: 0,
            capacity: file_len,
            growth,
            max_timestamp: i64::MIN,
            rolled_at_ms: first.map_or(now_ms, |h| h.max_timestamp.min(now_ms)),
            index_interval,
            log: (!sealed).then(|| Arc::new(log)),
            map,
            index,
            time_index,
            log_path,
            index_path,
            time_path,
        };
        seg.recover(rebuild)?;
        Ok(seg)
    }

    /// True once the segment is sealed: it is only read, and holds no file descriptor.
    pub fn is_sealed(&self) -> bool {
        self.log.is_none()
    }

    /// The active segment's open `.log` file.
    fn active_log(&self) -> &Arc<File> {
        self.log
            .as_ref()
            .expect("invariant: only the active segment is written, and it holds its file")
    }

    fn corrupt(&self, position: u64, reason: impl Into<String>) -> StorageError {
        StorageError::CorruptBatch {
            segment: self.log_path.clone(),
            position,
            reason: reason.into(),
        }
    }

    /// Checks the batch at `pos` fully (header, bounds, CRC) against the expected sequence.
    fn check_batch_at(
        &self,
        pos: u64,
        limit: u64,
        expected_offset: u64,
        min_term: u64,
    ) -> std::result::Result<BatchHeader, String> {
        let start = pos as usize;
        let avail = (limit - pos) as usize;
        let head = &self.map[start..start + avail.min(HEADER_LEN)];
        let h = BatchHeader::parse(head).map_err(|e| e.to_string())?;
        let len = h.batch_len as u64;
        if pos + len > limit {
            return Err(format!(
                "batch of {len} bytes runs past the end of the data"
            ));
        }
        batch::validate(&self.map[start..start + len as usize]).map_err(|e| e.to_string())?;
        if h.base_offset != expected_offset {
            return Err(format!(
                "base offset {} where {} was expected",
                h.base_offset, expected_offset
            ));
        }
        let term = u64::try_from(h.leader_epoch)
            .map_err(|_| format!("negative leader epoch {}", h.leader_epoch))?;
        if term < min_term {
            return Err(format!("term {term} after term {min_term}"));
        }
        Ok(h)
    }

    /// Checks every batch of the segment from its start (header, CRC, offsets and terms in
    /// sequence), not only those after the last index entry as recovery does.
    pub fn verify(&self) -> Result<()> {
        let (mut pos, mut offset, mut term) = (0u64, self.base_offset, 0u64);
        while pos < self.size {
            let h = self
                .check_batch_at(pos, self.size, offset, term)
                .map_err(|reason| self.corrupt(pos, reason))?;
            pos += h.batch_len as u64;
            offset = h.next_offset();
            term = epoch_term(&h);
        }
        Ok(())
    }

    fn is_zero_header(&self, pos: u64, limit: u64) -> bool {
        let end = (pos as usize + HEADER_LEN).min(limit as usize);
        self.map[pos as usize..end].iter().all(|b| *b == 0)
    }

    /// Rebuilds in-memory state from the files (see [`Segment::open`]).
    fn recover(&mut self, rebuild_index: bool) -> Result<()> {
        let limit = self.map.len() as u64;
        // Find the last index entry that points at a valid batch; start scanning there.
        let mut start: Option<IndexEntry> = None;
        if !rebuild_index {
            while let Some(e) = self.index.last() {
                let ok = (e.position as u64) < limit
                    && self
                        .check_batch_at(
                            e.position as u64,
                            limit,
                            self.base_offset + e.rel_offset as u64,
                            0,
                        )
                        .is_ok();
                if ok {
                    start = Some(e);
                    break;
                }
                if self.is_sealed() {
                    return Err(self.corrupt(
                        e.position as u64,
                        "index entry of a sealed segment points at an invalid batch",
                    ));
                }
                self.index.truncate(self.index.len() - 1);
            }
        }
        let (mut pos, mut offset, mut index) = match start {
            Some(e) => {
                self.time_index.truncate_after_offset(e.rel_offset);
                (
                    e.position as u64,
                    self.base_offset + e.rel_offset as u64,
                    self.index.base_index() + e.rel_index as u64,
                )
            }
            None => {
                self.index.truncate(0);
                self.time_index.truncate_after_offset(0);
                (0, self.base_offset, self.index.base_index())
            }
        };
        self.max_timestamp = self.time_index.last().map_or(i64::MIN, |t| t.timestamp);
        let mut term = 0u64;
        let end = loop {
            if pos + HEADER_LEN as u64 > limit || self.is_zero_header(pos, limit) {
                break ScanEnd::Clean(pos);
            }
            match self.check_batch_at(pos, limit, offset, term) {
                Ok(h) => {
                    self.note_index_point(pos, h.base_offset, index);
                    pos += h.batch_len as u64;
                    offset = h.next_offset();
                    index += 1;
                    term = epoch_term(&h);
                    self.last_term = Some(term);
                    self.max_timestamp = self.max_timestamp.max(h.max_timestamp);
                }
                Err(reason) => {
                    if self.is_sealed() {
                        return Err(self.corrupt(pos, reason));
                    }
                    // A valid batch right after the bad one means this is not a torn tail.
                    if let Ok(h) = BatchHeader::parse(&self.map[pos as usize..]) {
                        let next = pos + h.batch_len as u64;
                        let succ = next < limit
                            && BatchHeader::parse(&self.map[next as usize..]).is_ok_and(|n| {
                                next + n.batch_len as u64 <= limit
                                    && batch::validate(
                                        &self.map
                                            [next as usize..(next + n.batch_len as u64) as usize],
                                    )
                                    .is_ok()
                            });
                        if succ {
                            return Err(self.corrupt(
                                pos,
                                format!("{reason}, and a valid batch follows at position {next}"),
                            ));
                        }
                    }
                    break ScanEnd::Torn(pos, reason);
                }
            }
        };
        let valid_end = match &end {
            ScanEnd::Clean(p) | ScanEnd::Torn(p, _) => *p,
        };
        if self.is_sealed() && valid_end != limit {
            return Err(self.corrupt(valid_end, "sealed segment has bytes after its last batch"));
        }
        if let ScanEnd::Torn(p, reason) = &end {
            tracing::warn!(segment = %self.log_path.display(), position = p, %reason, "truncating torn tail");
        }
        self.size = valid_end;
        self.next_offset = offset;
        self.next_index = index;
        let sync = if self.is_sealed() {
            IndexSync::Written
        } else {
            self.wipe_after(valid_end)?;
            IndexSync::Never
        };
        // Persist rebuilt or trimmed indexes (they point at data just made durable).
        self.write_indexes(sync)?;
        Ok(())
    }

    /// Cuts the active segment's file at `end` (its valid data), durably, so that no stale
    /// batch can reappear after a later crash and no preallocated space outlives a restart (a
    /// file preallocated to the full segment size shrinks to its data). Only during recovery:
    /// nothing of the map has been handed out yet.
    fn wipe_after(&mut self, end: u64) -> Result<()> {
        let action = |what: &str| format!("recover segment {}: {what}", self.log_path.display());
        // Drop the map before the file shrinks under it.
        self.map = Bytes::new();
        let log = self.active_log();
        log.set_len(end)
            .and_then(|()| log.sync_all())
            .map_err(|e| StorageError::io(action("clear the tail"), e))?;
        self.map = mmap::map_bytes(log, end).map_err(|e| StorageError::io(action("map"), e))?;
        self.capacity = end;
        Ok(())
    }

    /// Writes every pending entry of both index files (and shortens a file longer than its
    /// table), opening each file only when it has something to write or `sync` is
    /// [`IndexSync::Both`], and closing it again.
    fn write_indexes(&mut self, sync: IndexSync) -> Result<()> {
        let (index, time_index) = (&mut self.index, &mut self.time_index);
        update_index_file(&self.index_path, index.needs_write(), sync, |f| {
            index.write_pending(f)
        })
        .and_then(|()| {
            update_index_file(&self.time_path, time_index.needs_write(), sync, |f| {
                time_index.write_pending(f)
            })
        })
        .map_err(|e| {
            let action = format!("write index of segment {}", self.log_path.display());
            StorageError::io(action, e)
        })
    }

    /// Adds index entries for the batch with base offset `base_offset` and Raft index `index`
    /// about to be (or being re-)accounted at `pos`.
    fn note_index_point(&mut self, pos: u64, base_offset: u64, index: u64) {
        let last_pos = self.index.last().map_or(0, |e| e.position as u64);
        let already = self.index.last().is_some_and(|e| e.position as u64 == pos);
        if !already && pos > 0 && pos - last_pos >= self.index_interval() {
            let rel_offset = (base_offset - self.base_offset) as u32;
            self.index.push(IndexEntry {
                rel_offset,
                rel_index: (index - self.index.base_index()) as u32,
                position: pos as u32,
            });
            if self.max_timestamp != i64::MIN {
                self.time_index.push(TimeEntry {
                    timestamp: self.max_timestamp,
                    rel_offset,
                });
            }
        }
    }

    fn index_interval(&self) -> u64 {
        self.index_interval
    }

    /// True when the segment holds at least one record (it may then be sealed).
    pub fn has_records(&self) -> bool {
        self.next_offset > self.base_offset
    }

    /// Makes room for `len` more bytes: when they do not fit in the file, grows it by a step
    /// ([`Growth::next_len`]; `fallocate` when preallocating) and maps it again at its new
    /// length. Bytes handed out keep the old map, which stays valid: the file only grew.
    fn reserve(&mut self, len: u64) -> io::Result<()> {
        let needed = self.size + len;
        if needed <= self.capacity {
            return Ok(());
        }
        let target = self.growth.next_len(self.capacity, needed);
        let log = self.active_log();
        if self.growth.allocate {
            mmap::preallocate(log, target)?;
        } else {
            log.set_len(target)?;
        }
        self.map = mmap::map_bytes(log, target)?;
        self.capacity = target;
        Ok(())
    }

    /// Appends a validated batch as Raft entry `index`, stamping its base offset and its leader
    /// epoch (`term`, which the log checked fits Kafka's i32 field).
    pub fn append(
        &mut self,
        bytes: &[u8],
        h: &BatchHeader,
        term: i32,
        index: u64,
    ) -> io::Result<AppendInfo> {
        debug_assert!(!self.is_sealed());
        let len = bytes.len() as u64;
        self.reserve(len)?;
        let pos = self.size;
        let base_offset = self.next_offset;
        let stamped = BatchHeader {
            base_offset,
            leader_epoch: term,
            ..*h
        };
        self.note_index_point(pos, base_offset, index);
        let prefix = batch::stamp_prefix(base_offset, h.batch_len, term);
        let log = self.active_log();
        log.write_all_at(&prefix, pos)?;
        log.write_all_at(&bytes[prefix.len()..], pos + prefix.len() as u64)?;
        self.size += len;
        self.next_offset = stamped.next_offset();
        self.next_index = index + 1;
        self.last_term = Some(epoch_term(&stamped));
        self.max_timestamp = self.max_timestamp.max(h.max_timestamp);
        Ok(AppendInfo {
            base_offset,
            next_offset: self.next_offset,
            raft_term: epoch_term(&stamped),
            raft_index: index,
        })
    }

    /// fdatasync of the log file, then the index entries that now point at durable data.
    pub fn flush(&mut self) -> io::Result<()> {
        self.active_log().sync_data()?;
        self.write_index_below(self.size)
    }

    /// A handle on the active segment's log file for an fsync run outside the log's lock.
    pub fn file(&self) -> Arc<File> {
        self.active_log().clone()
    }

    /// Writes the pending index entries that point at batches starting below `durable` (bytes
    /// known to be fsynced), keeping the rule that an index entry on disk points at durable data.
    /// An index file is opened only when it has entries to write (not on every flush).
    pub fn write_index_below(&mut self, durable: u64) -> io::Result<()> {
        let durable = u32::try_from(durable).unwrap_or(u32::MAX);
        let n = self.index.count_below_position(durable);
        let index = &mut self.index;
        update_index_file(
            &self.index_path,
            index.needs_write_upto(n),
            IndexSync::Never,
            |f| index.write_pending_upto(f, n),
        )?;
        // Time entries were pushed together with index entries; those up to the last written
        // index entry's offset are covered.
        let Some(rel) = self.index.written_last().map(|e| e.rel_offset) else {
            return Ok(());
        };
        let time_index = &mut self.time_index;
        update_index_file(
            &self.time_path,
            time_index.needs_write_upto_offset(rel),
            IndexSync::Never,
            |f| time_index.write_pending_upto_offset(f, rel),
        )
    }

    /// Seals the (flushed) active segment: final time-index entry, indexes fsynced, the file
    /// trimmed to its data and mapped again at that size, then closed: a sealed segment is read
    /// through its map and holds no file descriptor.
    pub fn seal(&mut self) -> Result<()> {
        if self.max_timestamp != i64::MIN {
            self.time_index.push(TimeEntry {
                timestamp: self.max_timestamp,
                rel_offset: (self.next_offset - self.base_offset) as u32,
            });
        }
        self.write_indexes(IndexSync::Both)?;
        let action = |what: &str| format!("seal segment {}: {what}", self.log_path.display());
        let log = self.active_log();
        log.set_len(self.size)
            .and_then(|()| log.sync_all())
            .map_err(|e| StorageError::io(action("trim"), e))?;
        self.map =
            mmap::map_bytes(log, self.size).map_err(|e| StorageError::io(action("map"), e))?;
        self.capacity = self.size;
        self.log = None;
        Ok(())
    }

    /// Takes a changed log configuration's growth steps and index interval. They apply from the
    /// next append on (a sealed segment uses them if a truncation makes it active again); bytes
    /// already written, the file's current length and index entries already taken stay.
    pub fn reconfigure(&mut self, growth: Growth, index_interval: u64) {
        self.growth = growth;
        self.index_interval = index_interval;
    }

    /// Makes a sealed segment the active one again (after a truncation reached into it): opens
    /// its `.log` file for writing again. The file holds exactly its data; the next append
    /// grows it.
    pub fn unseal(&mut self) -> Result<()> {
        debug_assert_eq!(self.capacity, self.size);
        let log = open_log_rw(&self.log_path).map_err(|e| {
            StorageError::io(format!("reopen segment {}", self.log_path.display()), e)
        })?;
        self.log = Some(Arc::new(log));
        Ok(())
    }

    /// Removes every entry with Raft index `>= index` (which must be in this segment), leaving
    /// the segment active. Returns the bytes removed.
    pub fn truncate_from_index(&mut self, index: u64) -> Result<u64> {
        let (pos, h) = self.find_index(index)?;
        if self.is_sealed() {
            self.unseal()?;
        }
        let removed = self.size - pos;
        let action = format!("truncate segment {}", self.log_path.display());
        let log = self.active_log();
        mmap::zero_range(log, pos, removed)
            .and_then(|()| log.sync_data())
            .map_err(|e| StorageError::io(action, e))?;
        self.size = pos;
        self.next_offset = h.base_offset;
        self.next_index = index;
        let keep = self.index.count_below_position(pos as u32);
        self.index.truncate(keep);
        self.time_index
            .truncate_after_offset((h.base_offset - self.base_offset) as u32);
        // Recompute the last term and max timestamp from the last index entry on.
        self.last_term = None;
        self.max_timestamp = self.time_index.last().map_or(i64::MIN, |t| t.timestamp);
        let mut p = self.index.last().map_or(0, |e| e.position as u64);
        while p < self.size {
            let hh = self.header_at(p)?;
            self.last_term = Some(epoch_term(&hh));
            self.max_timestamp = self.max_timestamp.max(hh.max_timestamp);
            p += hh.batch_len as u64;
        }
        self.write_indexes(IndexSync::Never)?;
        Ok(removed)
    }

    /// Parses the header at `pos` (a position the log wrote), as a corruption error otherwise.
    fn header_at(&self, pos: u64) -> Result<BatchHeader> {
        let h = BatchHeader::parse(&self.map[pos as usize..self.size as usize])
            .map_err(|e| self.corrupt(pos, e.to_string()))?;
        if pos + h.batch_len as u64 > self.size {
            return Err(self.corrupt(pos, "batch runs past the end of the segment"));
        }
        Ok(h)
    }

    /// Validates the batch at `pos` (CRC included) and returns it as a zero-copy slice.
    fn batch_at(&self, pos: u64) -> Result<(BatchHeader, Bytes)> {
        let h = self.header_at(pos)?;
        let bytes = self.checked_bytes(pos, &h)?;
        Ok((h, bytes))
    }

    /// The bytes of the batch at `pos` whose header is `h`, after checking its CRC.
    fn checked_bytes(&self, pos: u64, h: &BatchHeader) -> Result<Bytes> {
        let end = pos + h.batch_len as u64;
        let bytes = self.map.slice(pos as usize..end as usize);
        batch::validate(&bytes).map_err(|e| self.corrupt(pos, e.to_string()))?;
        Ok(bytes)
    }

    /// Position and header of the entry with Raft index `index`.
    fn find_index(&self, index: u64) -> Result<(u64, BatchHeader)> {
        let rel = index
            .checked_sub(self.index.base_index())
            .and_then(|r| u32::try_from(r).ok());
        let (mut pos, mut at) = match rel.and_then(|r| self.index.floor_index(r)) {
            Some(e) => (
                e.position as u64,
                self.index.base_index() + e.rel_index as u64,
            ),
            None => (0, self.index.base_index()),
        };
        if index < at || index >= self.next_index {
            return Err(StorageError::IndexOutOfRange {
                requested: index,
                first: self.index.base_index(),
                next: self.next_index,
            });
        }
        loop {
            let h = self.header_at(pos)?;
            if at == index {
                return Ok((pos, h));
            }
            pos += h.batch_len as u64;
            at += 1;
        }
    }

    /// Entries with Raft index in `[from, to)`, at least one, until `max_bytes`.
    pub fn entries(&self, from: u64, to: u64, max_bytes: u64, out: &mut Vec<Batch>) -> Result<u64> {
        let (mut pos, _) = self.find_index(from)?;
        let mut taken = 0u64;
        let mut index = from;
        while index < to && pos < self.size {
            let (h, bytes) = self.batch_at(pos)?;
            if !out.is_empty() && taken + h.batch_len as u64 > max_bytes {
                break;
            }
            taken += h.batch_len as u64;
            pos += h.batch_len as u64;
            index += 1;
            out.push(Batch::from_validated(h, bytes));
        }
        Ok(taken)
    }

    /// Whole data batches from the one holding `offset`, bounded by `max_bytes` (at least one
    /// batch) and by `upto` (exclusive; no batch reaching past it is returned), as one zero-copy
    /// slice of the map.
    ///
    /// Raft-internal entries are never handed out: those before the first batch returned are
    /// skipped, and the slice ends at the next one (the following read skips it). CRCs are not
    /// checked here: every batch was checked on append and on recovery, and consumers check
    /// what they receive.
    pub fn read(&self, offset: u64, max_bytes: u64, upto: u64) -> Result<Bytes> {
        let rel = u32::try_from(offset.saturating_sub(self.base_offset)).unwrap_or(u32::MAX);
        let mut pos = self
            .index
            .floor_offset(rel)
            .map_or(0, |e| e.position as u64);
        // Skip batches that end at or before `offset`, and internal entries.
        while pos < self.size {
            let h = self.header_at(pos)?;
            if h.next_offset() > offset && !h.is_internal() {
                break;
            }
            pos += h.batch_len as u64;
        }
        let start = pos;
        while pos < self.size {
            let h = self.header_at(pos)?;
            if h.is_internal() || h.next_offset() > upto {
                break;
            }
            if pos > start && pos - start + h.batch_len as u64 > max_bytes {
                break;
            }
            pos += h.batch_len as u64;
        }
        Ok(self.map.slice(start as usize..pos as usize))
    }

    /// The first offset whose record timestamp is `>= ts`, if this segment has one. Exact inside
    /// compressed batches (they are decompressed).
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<u64>> {
        if self.max_timestamp < ts {
            return Ok(None);
        }
        let rel = self.time_index.floor_below(ts).map_or(0, |t| t.rel_offset);
        let mut pos = self
            .index
            .floor_offset(rel)
            .map_or(0, |e| e.position as u64);
        while pos < self.size {
            let (h, bytes) = self.batch_at(pos)?;
            let at = pos;
            pos += h.batch_len as u64;
            if h.kind != EntryKind::Data || h.max_timestamp < ts {
                continue;
            }
            let records = Batch::from_validated(h, bytes)
                .records()
                .map_err(|e| self.corrupt(at, e.to_string()))?;
            for r in records {
                let r = r.map_err(|e| self.corrupt(at, e.to_string()))?;
                if r.timestamp >= ts {
                    return Ok(Some(r.offset));
                }
            }
            return Ok(Some(h.base_offset));
        }
        Ok(None)
    }

    /// Removes the segment's files (the caller fsyncs the directory).
    pub fn delete_files(self) -> io::Result<()> {
        // Log first: a leftover index without its log is removed on the next open.
        std::fs::remove_file(&self.log_path)?;
        for p in [&self.index_path, &self.time_path] {
            match std::fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The raft index of the first entry of this segment (or the next index when empty).
    pub fn base_index(&self) -> u64 {
        self.index.base_index()
    }
}

/// The Raft term of a stored batch: its leader epoch, which the log stamped from a term and
/// recovery checked is not negative.
fn epoch_term(h: &BatchHeader) -> u64 {
    u64::try_from(h.leader_epoch).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;

    fn growth(step_bytes_max: u64, segment_bytes_max: u64) -> Growth {
        Growth {
            step_bytes_max,
            segment_bytes_max,
            allocate: true,
        }
    }

    /// The file lengths a segment passes through when it grows one byte past each.
    fn lengths(g: Growth, upto: u64) -> Vec<u64> {
        let mut out = vec![0];
        while out[out.len() - 1] < upto {
            let len = out[out.len() - 1];
            out.push(g.next_len(len, len + 1));
        }
        out
    }

    #[test]
    fn steps_double_from_the_first_step_up_to_the_configured_step() {
        assert_eq!(
            lengths(growth(4 * MIB, 256 * MIB), 16 * MIB),
            [0, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 12288, 16384].map(|k| k * KIB)
        );
        // A configured step below the first step is used from the start.
        assert_eq!(
            lengths(growth(16 * KIB, 256 * MIB), 64 * KIB),
            [0, 16, 32, 48, 64].map(|k| k * KIB)
        );
        // A step as large as the segment approaches the old full preallocation geometrically.
        assert_eq!(
            *lengths(growth(256 * MIB, 256 * MIB), 256 * MIB)
                .last()
                .expect("grew"),
            256 * MIB
        );
    }

    #[test]
    fn a_step_stops_at_the_segment_size_but_a_batch_always_fits() {
        let g = growth(4 * MIB, MIB);
        assert_eq!(g.next_len(768 * KIB, 768 * KIB + 1), MIB);
        // A batch larger than the step: exactly one step past it is not needed, room is.
        assert_eq!(g.next_len(0, 3 * MIB), 3 * MIB);
        let small = growth(4 * KIB, MIB);
        assert_eq!(small.next_len(4 * KIB, 4 * KIB + 5000), 12 * KIB);
        // A segment without records is never rolled; it grows past its size, as far as needed.
        assert_eq!(g.next_len(MIB, MIB + 10), MIB + 10);
        // A file cut at an odd length after recovery grows back to a page boundary.
        assert_eq!(g.next_len(100, 101), 68 * KIB);
    }
}
