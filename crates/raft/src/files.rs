//! Small files written atomically: write a temporary file, fsync it, rename it over the old one,
//! fsync the directory. A reader sees either the old or the new contents, never a torn mix.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Replaces `path` with `contents` atomically and durably.
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    crate::blocking::debug_assert_may_block("write_atomic");
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        File::open(dir)?.sync_all()
    };
    write().map_err(|e| Error::io(format!("write {}", path.display()), e))
}

/// Reads `path`, or `None` when it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    crate::blocking::debug_assert_may_block("read_optional");
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_contents_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("vote");
        assert_eq!(read_optional(&p).expect("read"), None);
        write_atomic(&p, b"one").expect("write");
        write_atomic(&p, b"two").expect("write");
        assert_eq!(
            read_optional(&p).expect("read").as_deref(),
            Some(&b"two"[..])
        );
        assert!(!p.with_extension("tmp").exists());
    }
}
