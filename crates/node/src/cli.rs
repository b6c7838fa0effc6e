//! The `skein-node` command line: arguments, configuration, then [`crate::run`].

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{NodeConfig, Overrides, EXAMPLE_TOML};
use clap::{Parser, Subcommand};

/// The Skein broker. With no arguments it runs a single-node cluster on 127.0.0.1 (client API
/// 9650, peer 9651, HTTP 9652, Kafka protocol 9092) with its data in ./skein-data.
///
/// Settings come from the `--config` file, then `SKEIN_*` environment variables, then these
/// flags. `skein-node --print-config` prints a commented file with every setting, including the
/// Kafka listener's limits (`[kafka]`: connections_max, in_flight_max, frame_bytes_max,
/// idle_timeout; e.g. `SKEIN_KAFKA_CONNECTIONS_MAX=500`).
#[derive(Debug, Parser)]
#[command(name = "skein-node", version, about, long_about)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// TOML configuration file.
    #[arg(long, env = "SKEIN_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// This node's id, unique in the cluster, from 1 [default: 1].
    #[arg(long, env = "SKEIN_NODE_ID")]
    node_id: Option<u64>,
    /// Directory for partition logs and Raft state [default: ./skein-data].
    #[arg(long, env = "SKEIN_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Listen address of the client gRPC API [default: 127.0.0.1:9650].
    #[arg(long, env = "SKEIN_CLIENT_ADDR", value_name = "HOST:PORT")]
    client_addr: Option<String>,
    /// Listen address of the peer (Raft) gRPC API [default: 127.0.0.1:9651].
    #[arg(long, env = "SKEIN_PEER_ADDR", value_name = "HOST:PORT")]
    peer_addr: Option<String>,
    /// Listen address of /metrics, /healthz and /readyz [default: 127.0.0.1:9652].
    #[arg(long, env = "SKEIN_HTTP_ADDR", value_name = "HOST:PORT")]
    http_addr: Option<String>,
    /// Every node of the cluster, this one included, as ID=PEER_HOST:PORT,.. [default: this node
    /// alone].
    #[arg(long, env = "SKEIN_PEERS", value_name = "ID=HOST:PORT,..")]
    peers: Option<String>,
    /// The client address given to clients, when --client-addr is not reachable as-is
    /// (containers) [default: --client-addr].
    #[arg(long, env = "SKEIN_ADVERTISED_CLIENT_ADDR", value_name = "HOST:PORT")]
    advertised_client_addr: Option<String>,
    /// Listen address of the Kafka protocol listener [default: 127.0.0.1:9092].
    #[arg(long, env = "SKEIN_KAFKA_ADDR", value_name = "HOST:PORT")]
    kafka_addr: Option<String>,
    /// The Kafka address given to Kafka clients in Metadata responses, when --kafka-addr is not
    /// reachable as-is (containers, 0.0.0.0) [default: --kafka-addr, resolved to an IP].
    #[arg(long, env = "SKEIN_ADVERTISED_KAFKA_ADDR", value_name = "HOST:PORT")]
    advertised_kafka_addr: Option<String>,
    /// Print a commented configuration file with every setting and its default, and exit.
    #[arg(long)]
    print_config: bool,
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

/// Runs the `skein-node` command with the process's arguments and environment.
pub fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    if args.print_config {
        print!("{EXAMPLE_TOML}");
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(Command::Debug(cmd)) = args.command {
        let (text, ok) = match cmd {
            DebugCommand::DumpSegment { file } => crate::debug::dump_segment(&file)?,
            DebugCommand::Verify { data_dir } => crate::debug::verify(&data_dir)?,
        };
        print!("{text}");
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let overrides = Overrides {
        config_file: args.config,
        node_id: args.node_id,
        data_dir: args.data_dir,
        client_addr: args.client_addr,
        peer_addr: args.peer_addr,
        http_addr: args.http_addr,
        advertised_client_addr: args.advertised_client_addr,
        kafka_addr: args.kafka_addr,
        advertised_kafka_addr: args.advertised_kafka_addr,
        peers: args.peers,
    };
    let config = NodeConfig::load(&overrides, std::env::vars())?;
    crate::init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("skein")
        .build()?;
    runtime.block_on(async move {
        let listeners = crate::Listeners::bind(&config).await?;
        crate::run(listeners, config, crate::shutdown_signal()).await
    })?;
    Ok(ExitCode::SUCCESS)
}
