//! End-to-end harness: starts the real `berth-controller` and `berth-agent`
//! binaries against this machine's Docker daemon, drives them with the real
//! `berth` CLI, and inspects the results with the `docker` CLI. Nothing here
//! is faked; the only simulation is the GPU inventory (no GPU on CI).
//!
//! Every cluster gets unique node and job names, so tests run in parallel on
//! one daemon. Processes are killed and containers removed on drop.
//!
//! Layout: `cluster` (controllers and agents as processes), `cli` (the
//! `berth` CLI against them),
//! `docker` (what the daemon says), `dockerd` (a second daemon with its own
//! image store), `gates` (jobs that finish on cue), `netns` (another
//! "host" that can be partitioned silently); here, waiting on
//! conditions and naming.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod cli;
pub mod cluster;
pub mod docker;
pub mod dockerd;
pub mod gates;
pub mod netns;
pub mod scrape;

pub use cluster::{Cluster, Ctl, Proc};
pub use docker::*;
pub use dockerd::{main_image_id, Dockerd};
pub use gates::*;
pub use netns::Netns;
pub use scrape::{https_get, metric_family, metric_sample, scrape_metrics};

/// The image the tests run; built by `deploy/images/build-workload-image.sh`.
pub const IMAGE: &str = "berth/workload:latest";

/// A binary of this workspace, built next to the test executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (tests/run.sh does)",
        path.display()
    );
    path
}

/// Polls `f` until it returns Some, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub const DEADLINE: Duration = Duration::from_secs(45);

/// A short random suffix for names shared with the Docker daemon.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{:x}{:x}", std::process::id(), nanos)
}

pub fn ensure_image() {
    let ok = Command::new("docker")
        .args(["image", "inspect", IMAGE])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/images/build-workload-image.sh");
        let st = Command::new(script)
            .arg(IMAGE)
            .status()
            .expect("run image build script");
        assert!(st.success(), "building {IMAGE} failed");
    }
}

/// One field of every job in `berth ps -o json` output (`id`, `name`);
/// `None` when it is not such output (a controller not answering yet).
pub fn job_fields(ps_json: &[u8], field: &str) -> Option<Vec<String>> {
    let v: serde_json::Value = serde_json::from_slice(ps_json).ok()?;
    Some(
        v.as_array()?
            .iter()
            .map(|j| j[field].as_str().unwrap_or_default().to_string())
            .collect(),
    )
}
