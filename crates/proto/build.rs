//! Compiles `proto/**/*.proto` with the pure-Rust `protox` compiler (there is no `protoc` on the
//! build machines) and generates prost messages and tonic services from the descriptor set.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time: a build script compiled in one checkout must not read another's protos.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        root.join("skein/v1/errors.proto"),
        root.join("skein/v1/raft.proto"),
        root.join("skein/v1/client.proto"),
        root.join("skein/v1/internal.proto"),
        root.join("skein/v1/groups.proto"),
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let descriptors = protox::compile(&files, [&root])?;
    tonic_prost_build::configure()
        // Keep payloads as `Bytes` from the socket to the disk.
        .bytes(".")
        .compile_fds(descriptors)?;
    Ok(())
}
