//! The sparse indexes of a segment: `.index` (offset and Raft index -> position) and
//! `.timeindex` (timestamp -> offset).
//!
//! Both are arrays of fixed-size little-endian entries. The active segment keeps its entries in
//! memory and writes them to the file only after the log bytes they point at have been fsynced,
//! so an entry on disk always points at durable data. A sealed segment keeps the entries it had
//! when it was sealed; one opened from disk maps index files larger than a page and reads
//! smaller ones into memory. No index file is held open: the segment opens one to write it
//! (`needs_write*` says when) and closes it again.
//!
//! `.index`: a 24-byte header (`b"SKIX"`, version u32 = 2, base Raft index u64, CRC-32C of the
//! first 16 bytes u32, zero u32), then entries of
//! `relative offset u32 | relative raft index u32 | position u32`. Batches do not carry their
//! Raft index (Kafka's batch header has no room for it), so the header is where a segment's base
//! index lives; its CRC makes damage detected instead of misread.
//!
//! `.timeindex`: entries of `timestamp i64 | relative offset u32`. An entry `(t, o)` promises that
//! every batch before relative offset `o` has a max timestamp `<= t`.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use bytes::Bytes;

/// Size of the `.index` header.
pub const INDEX_HEADER_LEN: usize = 24;
/// Size of one `.index` entry.
pub const INDEX_ENTRY_LEN: usize = 12;
/// Size of one `.timeindex` entry.
pub const TIME_ENTRY_LEN: usize = 12;
const INDEX_MAGIC: &[u8; 4] = b"SKIX";
const INDEX_VERSION: u32 = 2;

/// One offset-index entry, relative to the segment's base offset and base Raft index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// Batch base offset minus segment base offset.
    pub rel_offset: u32,
    /// Batch Raft index minus segment base Raft index.
    pub rel_index: u32,
    /// Byte position of the batch in the `.log` file.
    pub position: u32,
}

/// One time-index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    /// Largest timestamp of the batches before `rel_offset`.
    pub timestamp: i64,
    /// Relative offset the entry points at.
    pub rel_offset: u32,
}

#[derive(Debug)]
enum Data {
    Owned(Vec<u8>),
    Mapped(Bytes),
}

impl Data {
    fn bytes(&self) -> &[u8] {
        match self {
            Data::Owned(v) => v,
            Data::Mapped(b) => b,
        }
    }

    fn owned(&mut self) -> &mut Vec<u8> {
        if let Data::Mapped(b) = self {
            *self = Data::Owned(b.to_vec());
        }
        match self {
            Data::Owned(v) => v,
            Data::Mapped(_) => unreachable!("converted to owned just above"),
        }
    }
}

/// A table of fixed-size entries with a count of how many are already in the file.
#[derive(Debug)]
struct Table {
    data: Data,
    entry_len: usize,
    file_header_len: usize,
    /// Entries already written to the file.
    written: usize,
    /// Length of the file as this table last left it (`None` until known), so that flushes do
    /// not have to `fstat` the file each time.
    file_len: Option<u64>,
}

impl Table {
    fn len(&self) -> usize {
        self.data.bytes().len() / self.entry_len
    }

    fn entry(&self, i: usize) -> &[u8] {
        &self.data.bytes()[i * self.entry_len..(i + 1) * self.entry_len]
    }

    fn push(&mut self, bytes: &[u8]) {
        debug_assert_eq!(bytes.len(), self.entry_len);
        self.data.owned().extend_from_slice(bytes);
    }

    fn truncate(&mut self, n: usize) {
        if n < self.len() {
            let len = n * self.entry_len;
            self.data.owned().truncate(len);
            self.written = self.written.min(n);
        }
    }

    /// The file's length, asked of the file system only the first time.
    fn known_file_len(&mut self, file: &File) -> io::Result<u64> {
        match self.file_len {
            Some(l) => Ok(l),
            None => {
                let l = file.metadata()?.len();
                self.file_len = Some(l);
                Ok(l)
            }
        }
    }

    /// Index of the last entry for which `pred` is true, assuming `pred` is true on a prefix.
    fn last_where(&self, pred: impl Fn(&[u8]) -> bool) -> Option<usize> {
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(self.entry(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1)
    }

    /// True when `write_pending_upto(file, upto)` has something to do: entries to write, a file
    /// longer than the table to shorten, or a file whose length is not known yet. Lets the
    /// segment open an index file only when it must (index files are not held open).
    fn needs_write_upto(&self, upto: usize) -> bool {
        let file_len_all = (self.file_header_len + self.len() * self.entry_len) as u64;
        self.written < upto.min(self.len()) || self.file_len.is_none_or(|l| l > file_len_all)
    }

    /// Writes the entries not yet in the file and, when the file holds more entries than the
    /// table (after a truncation), shortens it.
    fn write_pending(&mut self, file: &File) -> io::Result<()> {
        self.write_pending_upto(file, self.len())
    }

    /// Like `write_pending`, for the first `upto` entries only.
    fn write_pending_upto(&mut self, file: &File, upto: usize) -> io::Result<()> {
        let len = self.len();
        let upto = upto.min(len);
        let file_len_all = (self.file_header_len + len * self.entry_len) as u64;
        if self.written < upto {
            let start = self.written * self.entry_len;
            let bytes = &self.data.bytes()[start..upto * self.entry_len];
            let at = (self.file_header_len + start) as u64;
            file.write_all_at(bytes, at)?;
            self.written = upto;
            let end = at + bytes.len() as u64;
            self.file_len = Some(self.known_file_len(file)?.max(end));
        }
        if self.known_file_len(file)? > file_len_all {
            file.set_len(file_len_all)?;
            self.file_len = Some(file_len_all);
        }
        Ok(())
    }
}

/// The `.index` of one segment.
#[derive(Debug)]
pub struct OffsetIndex {
    table: Table,
    base_index: u64,
}

/// Why an index file could not be loaded as it is (the caller rebuilds it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IndexDamage {
    Missing,
    BadHeader,
    BadLength,
    NotMonotonic,
}

impl OffsetIndex {
    /// An empty index for a segment whose first entry will have Raft index `base_index`.
    pub fn new(base_index: u64) -> Self {
        OffsetIndex {
            table: Table {
                data: Data::Owned(Vec::new()),
                entry_len: INDEX_ENTRY_LEN,
                file_header_len: INDEX_HEADER_LEN,
                written: 0,
                file_len: None,
            },
            base_index,
        }
    }

    /// The file header for a segment starting at `base_index`.
    pub fn header_bytes(base_index: u64) -> [u8; INDEX_HEADER_LEN] {
        let mut h = [0u8; INDEX_HEADER_LEN];
        h[0..4].copy_from_slice(INDEX_MAGIC);
        h[4..8].copy_from_slice(&INDEX_VERSION.to_le_bytes());
        h[8..16].copy_from_slice(&base_index.to_le_bytes());
        let crc = crc32c::crc32c(&h[..16]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Parses a whole `.index` file's contents (the file's bytes, already read or mapped).
    /// Checks the header, the length and that entries increase; entries are not checked against
    /// the log here.
    pub(crate) fn parse(file: Bytes, mapped: bool) -> Result<Self, IndexDamage> {
        let file_len = file.len() as u64;
        if file.len() < INDEX_HEADER_LEN {
            return Err(IndexDamage::BadHeader);
        }
        if &file[0..4] != INDEX_MAGIC
            || file[4..8] != INDEX_VERSION.to_le_bytes()
            || file[16..20] != crc32c::crc32c(&file[..16]).to_le_bytes()
        {
            return Err(IndexDamage::BadHeader);
        }
        let mut b = [0u8; 8];
        b.copy_from_slice(&file[8..16]);
        let base_index = u64::from_le_bytes(b);
        let body = file.slice(INDEX_HEADER_LEN..);
        if !body.len().is_multiple_of(INDEX_ENTRY_LEN) {
            return Err(IndexDamage::BadLength);
        }
        let n = body.len() / INDEX_ENTRY_LEN;
        let data = if mapped {
            Data::Mapped(body)
        } else {
            Data::Owned(body.to_vec())
        };
        let idx = OffsetIndex {
            table: Table {
                data,
                entry_len: INDEX_ENTRY_LEN,
                file_header_len: INDEX_HEADER_LEN,
                written: n,
                file_len: Some(file_len),
            },
            base_index,
        };
        for i in 1..n {
            let (a, b) = (idx.get(i - 1), idx.get(i));
            if b.rel_offset < a.rel_offset || b.rel_index <= a.rel_index || b.position <= a.position
            {
                return Err(IndexDamage::NotMonotonic);
            }
        }
        Ok(idx)
    }

    /// Raft index of the segment's first entry.
    pub fn base_index(&self) -> u64 {
        self.base_index
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Entry `i`.
    pub fn get(&self, i: usize) -> IndexEntry {
        let e = self.table.entry(i);
        IndexEntry {
            rel_offset: u32::from_le_bytes([e[0], e[1], e[2], e[3]]),
            rel_index: u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            position: u32::from_le_bytes([e[8], e[9], e[10], e[11]]),
        }
    }

    /// The last entry, if any.
    pub fn last(&self) -> Option<IndexEntry> {
        self.len().checked_sub(1).map(|i| self.get(i))
    }

    /// Appends an entry (must increase in every field; checked in debug builds).
    pub fn push(&mut self, e: IndexEntry) {
        debug_assert!(self
            .last()
            .is_none_or(|l| l.rel_index < e.rel_index && l.position < e.position));
        let mut b = [0u8; INDEX_ENTRY_LEN];
        b[0..4].copy_from_slice(&e.rel_offset.to_le_bytes());
        b[4..8].copy_from_slice(&e.rel_index.to_le_bytes());
        b[8..12].copy_from_slice(&e.position.to_le_bytes());
        self.table.push(&b);
    }

    /// Keeps the first `n` entries.
    pub fn truncate(&mut self, n: usize) {
        self.table.truncate(n);
    }

    /// The last entry at or before relative offset `rel` (the batch it points at starts at or
    /// before `rel`), if any.
    pub fn floor_offset(&self, rel: u32) -> Option<IndexEntry> {
        self.table
            .last_where(|e| u32::from_le_bytes([e[0], e[1], e[2], e[3]]) <= rel)
            .map(|i| self.get(i))
    }

    /// The last entry at or before relative Raft index `rel`, if any.
    pub fn floor_index(&self, rel: u32) -> Option<IndexEntry> {
        self.table
            .last_where(|e| u32::from_le_bytes([e[4], e[5], e[6], e[7]]) <= rel)
            .map(|i| self.get(i))
    }

    /// Number of entries whose position is below `position`.
    pub fn count_below_position(&self, position: u32) -> usize {
        self.table
            .last_where(|e| u32::from_le_bytes([e[8], e[9], e[10], e[11]]) < position)
            .map_or(0, |i| i + 1)
    }

    /// True when [`OffsetIndex::write_pending_upto`] with `upto` has something to write.
    pub fn needs_write_upto(&self, upto: usize) -> bool {
        let no_header = self
            .table
            .file_len
            .is_none_or(|l| l < INDEX_HEADER_LEN as u64);
        no_header || self.table.needs_write_upto(upto)
    }

    /// True when [`OffsetIndex::write_pending`] has something to write.
    pub fn needs_write(&self) -> bool {
        self.needs_write_upto(self.len())
    }

    /// Writes the header (if the file is new) and the first `upto` entries not yet written.
    pub fn write_pending_upto(&mut self, file: &File, upto: usize) -> io::Result<()> {
        let len = self.table.known_file_len(file)?;
        if len < INDEX_HEADER_LEN as u64 {
            file.write_all_at(&Self::header_bytes(self.base_index), 0)?;
            self.table.file_len = Some(INDEX_HEADER_LEN as u64);
        }
        self.table.write_pending_upto(file, upto)
    }

    /// The last entry already written to the file.
    pub fn written_last(&self) -> Option<IndexEntry> {
        self.table.written.checked_sub(1).map(|i| self.get(i))
    }

    /// Writes the header (if the file is new), the entries not yet written, and trims the file
    /// to the table's length.
    pub fn write_pending(&mut self, file: &File) -> io::Result<()> {
        if file.metadata()?.len() < INDEX_HEADER_LEN as u64 {
            file.write_all_at(&Self::header_bytes(self.base_index), 0)?;
        }
        self.table.write_pending(file)
    }
}

/// The `.timeindex` of one segment.
#[derive(Debug)]
pub struct TimeIndex {
    table: Table,
}

impl TimeIndex {
    /// An empty time index.
    pub fn new() -> Self {
        TimeIndex {
            table: Table {
                data: Data::Owned(Vec::new()),
                entry_len: TIME_ENTRY_LEN,
                file_header_len: 0,
                written: 0,
                file_len: None,
            },
        }
    }

    /// Parses a `.timeindex` file's contents.
    pub(crate) fn parse(file: Bytes, mapped: bool) -> Result<Self, IndexDamage> {
        let file_len = file.len() as u64;
        if !file.len().is_multiple_of(TIME_ENTRY_LEN) {
            return Err(IndexDamage::BadLength);
        }
        let n = file.len() / TIME_ENTRY_LEN;
        let data = if mapped {
            Data::Mapped(file)
        } else {
            Data::Owned(file.to_vec())
        };
        let t = TimeIndex {
            table: Table {
                data,
                entry_len: TIME_ENTRY_LEN,
                file_header_len: 0,
                written: n,
                file_len: Some(file_len),
            },
        };
        for i in 1..n {
            let (a, b) = (t.get(i - 1), t.get(i));
            if b.timestamp <= a.timestamp || b.rel_offset < a.rel_offset {
                return Err(IndexDamage::NotMonotonic);
            }
        }
        Ok(t)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Entry `i`.
    pub fn get(&self, i: usize) -> TimeEntry {
        let e = self.table.entry(i);
        let mut t = [0u8; 8];
        t.copy_from_slice(&e[0..8]);
        TimeEntry {
            timestamp: i64::from_le_bytes(t),
            rel_offset: u32::from_le_bytes([e[8], e[9], e[10], e[11]]),
        }
    }

    /// The last entry.
    pub fn last(&self) -> Option<TimeEntry> {
        self.len().checked_sub(1).map(|i| self.get(i))
    }

    /// Appends an entry; ignored unless its timestamp is larger than the last one's.
    pub fn push(&mut self, e: TimeEntry) {
        if self.last().is_some_and(|l| l.timestamp >= e.timestamp) {
            return;
        }
        let mut b = [0u8; TIME_ENTRY_LEN];
        b[0..8].copy_from_slice(&e.timestamp.to_le_bytes());
        b[8..12].copy_from_slice(&e.rel_offset.to_le_bytes());
        self.table.push(&b);
    }

    /// Drops entries pointing past relative offset `rel`.
    pub fn truncate_after_offset(&mut self, rel: u32) {
        let keep = self.count_upto_offset(rel);
        self.table.truncate(keep);
    }

    /// The last entry whose timestamp is below `ts`: every record at a timestamp `>= ts` lies at
    /// or after its offset.
    pub fn floor_below(&self, ts: i64) -> Option<TimeEntry> {
        self.table
            .last_where(|e| {
                let mut t = [0u8; 8];
                t.copy_from_slice(&e[0..8]);
                i64::from_le_bytes(t) < ts
            })
            .map(|i| self.get(i))
    }

    /// Writes the entries not yet in the file.
    pub fn write_pending(&mut self, file: &File) -> io::Result<()> {
        self.table.write_pending(file)
    }

    /// True when [`TimeIndex::write_pending`] has something to write.
    pub fn needs_write(&self) -> bool {
        self.table.needs_write_upto(self.len())
    }

    /// Number of entries that point at or before relative offset `rel`.
    fn count_upto_offset(&self, rel: u32) -> usize {
        self.table
            .last_where(|e| u32::from_le_bytes([e[8], e[9], e[10], e[11]]) <= rel)
            .map_or(0, |i| i + 1)
    }

    /// True when [`TimeIndex::write_pending_upto_offset`] with `rel` has something to write.
    pub fn needs_write_upto_offset(&self, rel: u32) -> bool {
        self.table.needs_write_upto(self.count_upto_offset(rel))
    }

    /// Writes the pending entries that point at or before relative offset `rel`.
    pub fn write_pending_upto_offset(&mut self, file: &File, rel: u32) -> io::Result<()> {
        let n = self.count_upto_offset(rel);
        self.table.write_pending_upto(file, n)
    }
}

impl Default for TimeIndex {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn floor_lookups_match_a_linear_scan(
            steps in proptest::collection::vec((0u32..5, 1u32..5, 1u32..500), 0..200),
            probe in 0u32..2000,
        ) {
            let mut idx = OffsetIndex::new(100);
            let (mut o, mut r, mut p) = (0u32, 0u32, 0u32);
            let mut all = Vec::new();
            for (dob, dr, dp) in steps {
                let e = IndexEntry { rel_offset: o, rel_index: r, position: p };
                idx.push(e);
                all.push(e);
                o += dob; r += dr; p += dp;
            }
            let want = all.iter().rev().find(|e| e.rel_offset <= probe).copied();
            prop_assert_eq!(idx.floor_offset(probe), want);
            let want = all.iter().rev().find(|e| e.rel_index <= probe).copied();
            prop_assert_eq!(idx.floor_index(probe), want);
            prop_assert_eq!(idx.count_below_position(probe), all.iter().filter(|e| e.position < probe).count());

            // And the file form parses back to the same entries.
            let dir = tempfile::tempdir().expect("tempdir");
            let f = File::options().read(true).write(true).create(true).truncate(true).open(dir.path().join("i")).expect("open");
            idx.write_pending(&f).expect("write");
            let bytes = std::fs::read(dir.path().join("i")).expect("read");
            let back = OffsetIndex::parse(Bytes::from(bytes), false).expect("parses");
            prop_assert_eq!(back.base_index(), 100);
            prop_assert_eq!(back.len(), all.len());
            for (i, e) in all.iter().enumerate() {
                prop_assert_eq!(back.get(i), *e);
            }
        }

        #[test]
        fn time_floor_matches_a_linear_scan(
            steps in proptest::collection::vec((1i64..1000, 0u32..10), 0..100),
            probe in 0i64..50_000,
        ) {
            let mut t = TimeIndex::new();
            let (mut ts, mut o) = (0i64, 0u32);
            let mut all = Vec::new();
            for (dt, dof) in steps {
                ts += dt; o += dof;
                let e = TimeEntry { timestamp: ts, rel_offset: o };
                t.push(e);
                all.push(e);
            }
            prop_assert_eq!(t.floor_below(probe), all.iter().rev().find(|e| e.timestamp < probe).copied());
        }
    }

    #[test]
    fn damaged_files_are_detected() {
        assert_eq!(
            OffsetIndex::parse(Bytes::from_static(b"nope"), false).err(),
            Some(IndexDamage::BadHeader)
        );
        let mut good = OffsetIndex::header_bytes(5).to_vec();
        good.extend_from_slice(&[1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]);
        let mut short = good.clone();
        short.pop();
        assert_eq!(
            OffsetIndex::parse(Bytes::from(short), false).err(),
            Some(IndexDamage::BadLength)
        );
        let mut back = good.clone();
        back.extend_from_slice(&[0u8; 12]);
        assert_eq!(
            OffsetIndex::parse(Bytes::from(back), false).err(),
            Some(IndexDamage::NotMonotonic)
        );
        let mut flipped = good.clone();
        flipped[9] ^= 0x04; // a flipped bit in the base index is caught by the header CRC
        assert_eq!(
            OffsetIndex::parse(Bytes::from(flipped), false).err(),
            Some(IndexDamage::BadHeader)
        );
        let idx = OffsetIndex::parse(Bytes::from(good), true).expect("good");
        assert_eq!(idx.base_index(), 5);
        assert_eq!(idx.len(), 1);
    }

    #[test]
    fn an_index_file_needs_a_write_only_for_new_entries_or_a_truncation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = File::options()
            .write(true)
            .create_new(true)
            .open(dir.path().join("i"))
            .expect("create");
        let mut idx = OffsetIndex::new(7);
        assert!(idx.needs_write(), "a new file needs its header");
        idx.write_pending(&f).expect("write header");
        assert!(!idx.needs_write());
        for i in 1..=3 {
            idx.push(IndexEntry {
                rel_offset: i,
                rel_index: i,
                position: i * 100,
            });
        }
        assert!(idx.needs_write_upto(1));
        idx.write_pending_upto(&f, 1).expect("write one");
        assert!(!idx.needs_write_upto(1), "the first entry is on disk");
        assert!(idx.needs_write(), "two entries are not");
        idx.write_pending(&f).expect("write all");
        assert!(!idx.needs_write());
        idx.truncate(1);
        assert!(idx.needs_write(), "the file is longer than the index");
        idx.write_pending(&f).expect("shorten");
        assert!(!idx.needs_write());
        let len = (INDEX_HEADER_LEN + INDEX_ENTRY_LEN) as u64;
        assert_eq!(f.metadata().expect("meta").len(), len);

        let mut t = TimeIndex::new();
        assert!(t.needs_write(), "the file's length is not known yet");
        f.set_len(0).expect("empty");
        t.write_pending(&f).expect("learn the length");
        assert!(!t.needs_write());
        t.push(TimeEntry {
            timestamp: 10,
            rel_offset: 5,
        });
        assert!(!t.needs_write_upto_offset(4));
        assert!(t.needs_write_upto_offset(5));
    }

    #[test]
    fn truncation_rewrites_the_file_shorter() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t");
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("open");
        let mut t = TimeIndex::new();
        for i in 1..=10 {
            t.push(TimeEntry {
                timestamp: i * 10,
                rel_offset: i as u32,
            });
        }
        t.write_pending(&f).expect("write");
        t.truncate_after_offset(4);
        assert_eq!(t.len(), 4);
        t.write_pending(&f).expect("rewrite");
        assert_eq!(f.metadata().expect("meta").len(), 4 * TIME_ENTRY_LEN as u64);
        // Pushing an older timestamp is ignored.
        t.push(TimeEntry {
            timestamp: 5,
            rel_offset: 5,
        });
        assert_eq!(t.len(), 4);
    }
}
