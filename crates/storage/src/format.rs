//! The on-disk format marker of a data directory.
//!
//! A data directory records the format its files are written in, in a small file named
//! `skein-format` (`skein-format 2\n`). Format 2 stores Kafka's RecordBatch v2 (see
//! `docs/design/002-kafka-record-batch.md`); format 1, Skein's own 72-byte little-endian batch,
//! wrote no marker. Opening a directory of another format fails with an error that says what
//! was found and what to do; bytes of one format are never read as another.

use std::io::Write;
use std::path::Path;

use crate::error::{Result, StorageError};
use crate::log::sync_dir;

/// The on-disk format this build reads and writes.
pub const FORMAT_VERSION: u32 = 2;

/// Name of the marker file in a data directory.
pub const FORMAT_MARKER: &str = "skein-format";

const HINT: &str = "there is no migration between formats: move the directory away or delete it, \
                    or start the node with another --data-dir";

/// Checks that `dir` holds data of [`FORMAT_VERSION`], or is new or empty (then it writes the
/// marker, durably). Creates `dir` when missing.
pub fn check_data_dir(dir: &Path) -> Result<()> {
    let action = |what: &str| format!("{what} {}", dir.display());
    std::fs::create_dir_all(dir).map_err(|e| StorageError::io(action("create"), e))?;
    let marker = dir.join(FORMAT_MARKER);
    match read_marker(&marker) {
        Ok(text) => check_marker(dir, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut entries =
                std::fs::read_dir(dir).map_err(|e| StorageError::io(action("list"), e))?;
            if entries.next().is_some() {
                return Err(mismatch(
                    dir,
                    "data without a format marker (written by a Skein older than on-disk \
                     format 2, in Skein's own 72-byte batch format)"
                        .to_owned(),
                ));
            }
            write_marker(dir)
        }
        Err(e) => Err(StorageError::io(action("read the format marker of"), e)),
    }
}

/// Reads at most `MARKER_BYTES_MAX` bytes of the marker (it is one short line; a larger file is
/// not a marker and fails the check, without being read whole).
fn read_marker(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MARKER_BYTES_MAX + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MARKER_BYTES_MAX {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("longer than {MARKER_BYTES_MAX} bytes, not a format marker"),
        ));
    }
    Ok(text)
}

/// Longest marker read.
const MARKER_BYTES_MAX: u64 = 64;

fn check_marker(dir: &Path, text: &str) -> Result<()> {
    let version = text
        .trim()
        .strip_prefix("skein-format ")
        .and_then(|v| v.parse::<u32>().ok());
    match version {
        Some(FORMAT_VERSION) => Ok(()),
        Some(v) => Err(mismatch(dir, format!("data in on-disk format {v}"))),
        None => Err(mismatch(
            dir,
            format!("an unreadable format marker {:?}", text.trim()),
        )),
    }
}

fn mismatch(dir: &Path, found: String) -> StorageError {
    StorageError::FormatMismatch {
        dir: dir.to_path_buf(),
        found,
        expected: FORMAT_VERSION,
        hint: HINT,
    }
}

/// Writes the marker atomically: a temporary file, fsync, rename, fsync of the directory.
fn write_marker(dir: &Path) -> Result<()> {
    let tmp = dir.join(format!("{FORMAT_MARKER}.tmp"));
    let action = |what: &str| format!("{what} {}", tmp.display());
    let mut f = std::fs::File::create(&tmp).map_err(|e| StorageError::io(action("create"), e))?;
    f.write_all(format!("skein-format {FORMAT_VERSION}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| StorageError::io(action("write"), e))?;
    std::fs::rename(&tmp, dir.join(FORMAT_MARKER))
        .map_err(|e| StorageError::io(action("rename"), e))?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_directory_gets_the_marker_and_opens_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().join("data");
        check_data_dir(&d).expect("new");
        let text = std::fs::read_to_string(d.join(FORMAT_MARKER)).expect("marker");
        assert_eq!(text, "skein-format 2\n");
        check_data_dir(&d).expect("same format");
    }

    #[test]
    fn an_old_directory_is_refused_with_what_was_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("partitions")).expect("mkdir");
        let err = check_data_dir(dir.path()).expect_err("old data");
        let msg = err.to_string();
        assert!(msg.contains("without a format marker"), "{msg}");
        assert!(msg.contains("--data-dir"), "{msg}");
        assert!(!dir.path().join(FORMAT_MARKER).exists(), "nothing written");
    }

    #[test]
    fn another_version_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(FORMAT_MARKER), "skein-format 3\n").expect("write");
        let msg = check_data_dir(dir.path()).expect_err("v3").to_string();
        assert!(
            msg.contains("format 3") && msg.contains("format 2"),
            "{msg}"
        );
        std::fs::write(dir.path().join(FORMAT_MARKER), "garbage").expect("write");
        assert!(check_data_dir(dir.path()).is_err());
        let long = format!("skein-format 2{}", " ".repeat(1 << 20));
        std::fs::write(dir.path().join(FORMAT_MARKER), long).expect("write");
        assert!(check_data_dir(dir.path()).is_err(), "not a marker");
    }
}
