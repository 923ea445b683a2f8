//! Generates the gRPC code and the descriptor set (for reflection) from
//! `proto/` with protox, a pure-Rust protobuf compiler: no `protoc` needed.

use std::path::PathBuf;

use prost::Message as _;

const FILES: &[&str] = &[
    "juy/calendar/v1/resources.proto",
    "juy/calendar/v1/calendar_sync.proto",
    "juy/calendar/v1/admin.proto",
    "juy/calendar/v1/availability.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let fds = protox::compile(FILES, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("juy_calendar_v1_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
