//! `skein-node` built inside the test package, so that process tests can run it through
//! `CARGO_BIN_EXE_skein-node-under-test` (always rebuilt with the tests).

fn main() -> anyhow::Result<std::process::ExitCode> {
    skein_node::cli::main()
}
