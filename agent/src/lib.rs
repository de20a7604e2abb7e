//! Berth agent: one per GPU host. Reports GPUs (NVML or simulated), disk and
//! containers; reconciles the local Docker daemon toward the node's desired
//! allocations; serves the data plane (logs, exec, cp, images) to
//! controllers and other agents, over mutual TLS only.
//!
//! Layout:
//! - `gpu`: `GpuBackend` trait; `NvmlGpus`, `SimGpus` (with the foreign-process hook).
//! - `runtime`: the runtime's traits by concern (`Containers`, `ContainerIo`,
//!   `Images`); `Docker` (bollard) and a recording fake.
//! - `container`: pure allocation → container spec (env, labels, mounts, ports, GPUs, privileges).
//! - `images`: image transfers agent to agent (export stream, verified load);
//!   `relay`: forwarding an image to the next agent while receiving it;
//!   `pulls`: receiving the image of jobs placed here (one transfer per image);
//!   `layers`: leaving out the layers the receiver has (pure tar filter).
//! - `reconcile`: pure desired + actual → actions; `gc`: pure image GC choice.
//! - `agent`: the session loop (register, watch, reconcile, report);
//!   `fence`: the lease, and stopping jobs when it runs out (partitions);
//!   `limits`: container defaults (log size, pids, memory) and retention;
//!   `metrics`: what `/metrics` counts, and who may read it;
//!   `certs`: joining with a token, renewing the node certificate;
//!   `audit`: the exec/cp/commit audit log.
//! - `server`: the data-plane gRPC service; `exec`: `docker exec` sessions;
//!   `files`: `docker cp` and `docker commit` for the controller.
//! - `faults`: test hooks, compiled only with the `fault-injection` feature.

pub mod agent;
pub mod audit;
pub mod build;
pub mod certs;
pub mod container;
mod error;
pub mod exec;
mod faults;
pub mod fence;
pub mod files;
pub mod gc;
pub mod gpu;
pub mod images;
pub mod layers;
pub mod limits;
pub mod metrics;
pub mod pulls;
pub mod reconcile;
pub mod relay;
pub mod resources;
pub mod runtime;
pub mod server;

pub use agent::{Agent, AgentConfig};
pub use error::{Error, Result};

use std::sync::Arc;

/// Builds the GPU backend: NVML if it loads, else `fake_gpus` simulated GPUs.
pub fn gpu_backend(
    node: &str,
    fake_gpus: Option<&str>,
    foreign_file: Option<std::path::PathBuf>,
) -> Result<Arc<dyn gpu::GpuBackend>> {
    let spec = fake_gpus.unwrap_or("0").to_string();
    let node = node.to_string();
    let backend = gpu::detect(move || {
        Ok(gpu::SimGpus::new(
            gpu::parse_spec(&spec)?,
            &node,
            foreign_file,
        ))
    })?;
    Ok(Arc::from(backend))
}

/// Now, in unix millis (the audit log's stamps, the container retention).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The host's name, the default node name.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}
