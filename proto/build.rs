//! Compiles `berth/v1/*.proto` with protox (pure Rust), so building Berth never
//! needs a `protoc` binary. The encoded descriptor set is kept for gRPC reflection.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "berth/v1/types.proto",
        "berth/v1/jobs.proto",
        "berth/v1/cluster.proto",
        "berth/v1/agent.proto",
        "berth/v1/raft.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("berth_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    // serde on the messages lets the controller keep specs in its log as-is.
    tonic_prost_build::configure()
        .type_attribute(
            ".berth.v1",
            "#[derive(serde::Serialize, serde::Deserialize)]",
        )
        // Logs written before a field existed still decode: missing = default.
        .type_attribute(".berth.v1.JobSpec", "#[serde(default)]")
        .type_attribute(".berth.v1.ArrayRange", "#[serde(default)]")
        .type_attribute(".berth.v1.GpuRef", "#[serde(default)]")
        .compile_fds(fds)?;
    Ok(())
}
