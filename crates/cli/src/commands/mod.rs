//! One module per verb.

pub mod cluster;
pub mod consume;
pub mod group;
pub mod produce;
pub mod topic;

use std::io::Write;

/// Writes `text` to standard output; a closed pipe (`| head`) is not an error.
pub(crate) fn print_stdout(text: &str) -> anyhow::Result<()> {
    write_stdout(text.as_bytes()).map(|_| ())
}

/// Writes raw bytes to standard output. Returns false when the reader has gone away (a closed
/// pipe), which callers take as "stop".
pub(crate) fn write_stdout(bytes: &[u8]) -> anyhow::Result<bool> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|_| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(anyhow::anyhow!("write to standard output: {e}")),
    }
}
