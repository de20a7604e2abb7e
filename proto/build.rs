//! Compiles the `.proto` files with protox (pure Rust), so building Berth never
//! needs a `protoc` binary. The encoded descriptor sets are kept for gRPC
//! reflection: the public API's alone, and everything a controller serves.

const PUBLIC: [&str; 8] = [
    "berth/v1/types.proto",
    "berth/v1/jobs.proto",
    "berth/v1/nodes.proto",
    "berth/v1/images.proto",
    "berth/v1/events.proto",
    "berth/v1/controllers.proto",
    "berth/v1/access.proto",
    "berth/v1/usage.proto",
];
const INTERNAL: [&str; 3] = [
    "berth/internal/v1/control.proto",
    "berth/internal/v1/agent.proto",
    "berth/internal/v1/raft.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for f in PUBLIC.iter().chain(&INTERNAL) {
        println!("cargo:rerun-if-changed={f}");
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    // The public set must stand alone: it may not import the internal files.
    let public = protox::compile(PUBLIC, ["."])?;
    std::fs::write(
        out.join("berth_v1_descriptor.bin"),
        prost::Message::encode_to_vec(&public),
    )?;
    let all = protox::compile(PUBLIC.iter().chain(&INTERNAL), ["."])?;
    std::fs::write(
        out.join("berth_all_descriptor.bin"),
        prost::Message::encode_to_vec(&all),
    )?;
    tonic_prost_build::configure().compile_fds(all)?;
    Ok(())
}
