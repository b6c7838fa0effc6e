//! `skein`: the command-line tool for Skein clusters.
//!
//! The verbs (`topic`, `produce`, `consume`, `group`, `cluster`) arrive with the broker issue;
//! until then the command only says so, with a non-zero exit status.

use clap::Parser;

/// The Skein command-line tool.
#[derive(Debug, Parser)]
#[command(name = "skein", version, about)]
struct Args {
    /// Brokers to contact, `HOST:PORT[,HOST:PORT..]`.
    #[arg(
        long,
        env = "SKEIN_BROKERS",
        default_value = "127.0.0.1:9650",
        global = true
    )]
    brokers: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::bail!(
        "this build of skein has no client verbs yet (brokers: {}); use `skein-node debug` to inspect logs offline",
        args.brokers
    )
}
