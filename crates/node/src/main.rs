//! `skein-node`: the Skein broker binary. A thin shell over [`skein_node::cli::main`].

fn main() -> anyhow::Result<std::process::ExitCode> {
    skein_node::cli::main()
}
