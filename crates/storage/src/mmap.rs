//! Every `unsafe` block of the crate: memory maps and the two Linux file calls std lacks.
//!
//! The rules that make the maps sound in practice, which the rest of the crate keeps:
//! - a file is mapped only up to its current length, and a file is never shortened below a range
//!   the log has handed out as `Bytes` (sealing trims only the unwritten, never-read tail;
//!   recovery trims the active segment before anything of it is handed out);
//! - the active segment grows in steps: the file is extended first, then mapped again at its new
//!   length. Slices handed out earlier own the old, shorter map, which stays valid because the
//!   file only grew under it;
//! - bytes inside the handed-out range are never rewritten, with one exception: truncation of an
//!   uncommitted Raft tail punches a hole over it, which readers see as zeros, never as a fault;
//! - nothing outside this process writes the files while the log is open (the data directory is
//!   the replica's own);
//! - a map does not need its file to stay open: sealed segments close their files once mapped
//!   (the map keeps the file's pages reachable, even after the file is deleted).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use bytes::Bytes;
use memmap2::{Mmap, MmapOptions};

/// Maps the first `len` bytes of `file` read-only and wraps the map in a `Bytes` that owns it, so
/// that slices handed to readers keep the map alive without copying.
///
/// `len` must not exceed the file's length. A zero `len` gives an empty `Bytes` and no map.
pub(crate) fn map_bytes(file: &File, len: u64) -> io::Result<Bytes> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    let len = usize::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "map length exceeds usize"))?;
    // SAFETY: the map is read-only and shared; `len` is within the file's length (callers size
    // the file first), so no access faults; the file belongs to this log and is modified only by
    // the log itself under the rules in this module's docs.
    let map: Mmap = unsafe { MmapOptions::new().len(len).map(file)? };
    Ok(Bytes::from_owner(map))
}

/// Allocates blocks for `[0, len)` and extends the file to `len` (one step of the active segment),
/// so that later writes below `len` neither fail for lack of space nor change the file's size
/// (which keeps `fdatasync` cheap). Falls back to `set_len` where the file system cannot
/// preallocate. Never shrinks the file.
pub(crate) fn preallocate(file: &File, len: u64) -> io::Result<()> {
    let current = file.metadata()?.len();
    if current >= len {
        return Ok(());
    }
    let off = 0 as libc::off_t;
    let size = libc::off_t::try_from(len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length exceeds off_t"))?;
    // SAFETY: plain syscall on a valid, open file descriptor owned by `file`; no memory is passed.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, off, size) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => file.set_len(len),
        _ => Err(err),
    }
}

/// Makes `[offset, offset + len)` of the file read as zeros without changing its size: punches a
/// hole where the file system can, writes zeros otherwise.
pub(crate) fn zero_range(file: &File, offset: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let (o, l) = match (libc::off_t::try_from(offset), libc::off_t::try_from(len)) {
        (Ok(o), Ok(l)) => (o, l),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "range exceeds off_t",
            ))
        }
    };
    // SAFETY: plain syscall on a valid, open file descriptor owned by `file`; no memory is passed.
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            o,
            l,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => {
            let zeros = vec![0u8; 64 * 1024];
            let mut at = offset;
            let end = offset + len;
            while at < end {
                let n = (end - at).min(zeros.len() as u64) as usize;
                file.write_all_at(&zeros[..n], at)?;
                at += n as u64;
            }
            Ok(())
        }
        _ => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn map_sees_positioned_writes_and_holes_read_as_zero() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let mut f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("create");
        preallocate(&f, 8192).expect("preallocate");
        assert_eq!(f.metadata().expect("meta").len(), 8192);
        let map = map_bytes(&f, 8192).expect("map");
        f.write_all_at(b"hello", 4096).expect("write");
        f.flush().expect("flush");
        assert_eq!(&map[4096..4101], b"hello");
        zero_range(&f, 4096, 4096).expect("zero");
        assert_eq!(&map[4096..4101], &[0u8; 5]);
        assert_eq!(f.metadata().expect("meta").len(), 8192);
        assert!(map_bytes(&f, 0).expect("empty").is_empty());
    }
}
