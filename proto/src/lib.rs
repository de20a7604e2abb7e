//! Berth's gRPC contracts, generated from `proto/berth/**/*.proto`.
//!
//! Layout:
//! - `v1`: the public API (`berth.v1`), stable: what the CLI, pipelines and
//!   dashboards call — jobs, nodes, images, events, controller membership.
//! - `internal::v1`: Berth's own wiring (`berth.internal.v1`), versioned
//!   with the release — the agents' control plane, the agent's data plane,
//!   raft between controllers.
//! - `tls`: the cluster CA, certificates that carry a peer's role, and the
//!   mutual-TLS settings of every server and channel; `connect`: channels
//!   (TLS, deadlines, keepalives, the bearer token) and finding the leader.
//! - `image_ref`: image references as Docker resolves them.
//! - `archive`: image archives as chunks on the wire (the codec every side
//!   uses); `size`: sizes as docker writes them.
//! - `logs`: every binary's logger (text, or JSON with `--log-format json`).
//! - `web`: the HTTPS side (`/metrics`, pages): TLS, tokens, serving.
//! - helpers on generated enums used by every crate.

pub mod archive;
pub mod audit;
pub mod connect;
mod error;
pub mod image_ref;
pub mod logs;
pub mod policy;
pub mod size;
pub mod tls;
pub mod web;

pub use error::{Error, Result};

pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("berth.v1");

    /// Encoded `FileDescriptorSet` of the public berth.v1 package alone.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/berth_v1_descriptor.bin"));
}

pub mod internal {
    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("berth.internal.v1");
    }
}

/// Encoded `FileDescriptorSet` of everything a controller serves (berth.v1
/// and berth.internal.v1), for gRPC reflection.
pub const ALL_FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/berth_all_descriptor.bin"));

use v1::JobState;

impl JobState {
    /// Lower-case word for tables and logs ("queued", "running", ...).
    pub fn word(self) -> &'static str {
        match self {
            JobState::Unspecified => "unknown",
            JobState::Queued => "queued",
            JobState::Placed => "placed",
            JobState::Pulling => "pulling",
            JobState::Running => "running",
            JobState::Stopping => "stopping",
            JobState::Exited => "exited",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// A finished job holds nothing and never changes again. (What a job
    /// holds in each state is the controller's business: its own
    /// `state::JobState` owns the transitions.)
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Exited | JobState::Failed | JobState::Cancelled
        )
    }
}

use internal::v1::{ContainerState, GpuBackend};

impl ContainerState {
    /// Docker's state word ("created", "running", ...), parsed once where
    /// the daemon's answer comes in.
    pub fn from_docker(word: &str) -> ContainerState {
        match word {
            "created" => ContainerState::Created,
            "running" => ContainerState::Running,
            "paused" => ContainerState::Paused,
            "restarting" => ContainerState::Restarting,
            "removing" => ContainerState::Removing,
            "exited" => ContainerState::Exited,
            "dead" => ContainerState::Dead,
            _ => ContainerState::Unspecified,
        }
    }

    /// Docker's word for it.
    pub fn word(self) -> &'static str {
        match self {
            ContainerState::Unspecified => "unknown",
            ContainerState::Created => "created",
            ContainerState::Running => "running",
            ContainerState::Paused => "paused",
            ContainerState::Restarting => "restarting",
            ContainerState::Removing => "removing",
            ContainerState::Exited => "exited",
            ContainerState::Dead => "dead",
        }
    }

    /// A process of the container may be alive (on a GPU, holding ports).
    pub fn is_running(self) -> bool {
        matches!(
            self,
            ContainerState::Running | ContainerState::Restarting | ContainerState::Paused
        )
    }
}

impl GpuBackend {
    /// "nvml" or "simulated", as `berth nodes` shows it.
    pub fn word(self) -> &'static str {
        match self {
            GpuBackend::Nvml => "nvml",
            GpuBackend::Simulated => "simulated",
            GpuBackend::Unspecified => "unknown",
        }
    }
}
