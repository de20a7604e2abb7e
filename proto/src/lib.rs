//! The `berth.v1` gRPC contract, generated from `proto/berth/v1/*.proto`.
//!
//! Layout:
//! - `v1`: messages, clients and servers (tonic + prost).
//! - `v1::FILE_DESCRIPTOR_SET`: the encoded descriptors, for reflection.
//! - `connect`: finding the leader among the controllers given.
//! - `image_ref`: image references as Docker resolves them.
//! - helpers on generated enums used by every crate.

pub mod connect;
pub mod image_ref;

pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("berth.v1");

    /// Encoded `FileDescriptorSet` of the whole berth.v1 package.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/berth_descriptor.bin"));
}

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

    /// A finished job holds nothing and never changes again.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Exited | JobState::Failed | JobState::Cancelled
        )
    }
}

impl JobState {
    /// A placed, pulling, running or stopping job holds its GPUs and host ports.
    pub fn holds_resources(self) -> bool {
        matches!(
            self,
            JobState::Placed | JobState::Pulling | JobState::Running | JobState::Stopping
        )
    }

    /// Queued or holding resources: the job's name is taken.
    pub fn is_live(self) -> bool {
        self == JobState::Queued || self.holds_resources()
    }
}
