//! `skein-node`: the Skein broker binary. A thin shell: parse arguments, call the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The Skein broker.
#[derive(Debug, Parser)]
#[command(name = "skein-node", version, about)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Offline tools that read a data directory without changing it.
    #[command(subcommand)]
    Debug(DebugCommand),
}

#[derive(Debug, Subcommand)]
enum DebugCommand {
    /// Print every batch of one segment file (`NNNNNNNNNNNNNNNNNNNN.log`) and check its CRCs.
    DumpSegment {
        /// The `.log` file.
        file: PathBuf,
    },
    /// Check every CRC, the offset sequence and every index entry of every partition log under
    /// a data directory. Exits 1 when anything is damaged.
    Verify {
        /// The node's data directory.
        data_dir: PathBuf,
    },
}

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let (text, ok) = match args.command {
        Some(Command::Debug(DebugCommand::DumpSegment { file })) => skein_node::debug::dump_segment(&file)?,
        Some(Command::Debug(DebugCommand::Verify { data_dir })) => skein_node::debug::verify(&data_dir)?,
        None => anyhow::bail!(
            "this build of skein-node has no broker yet: only `skein-node debug dump-segment FILE` and `skein-node debug verify DATA_DIR` are available"
        ),
    };
    print!("{text}");
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
