//! The records the replicated state keeps: nodes as registered, jobs, and
//! placements. Like everything in the log, their serde form is frozen
//! (see `format`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::spec::{GpuBackend, GpuRef, JobSpec, JobState};

/// A node as registered: inventory only. Telemetry is not replicated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    pub agent_addr: String,
    pub gpu_backend: GpuBackend,
    pub gpus: Vec<GpuInventory>,
    pub docker_version: String,
    /// Placement labels (agent `--label key=value`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Version 6: schedulable CPU (thousandths of a core) and memory
    /// (bytes); 0: unknown, not counted.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub millicpus: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub memory_bytes: u64,
    #[serde(default, skip_serializing_if = "is_zero32")]
    pub numa_nodes: u32,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_zero32(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuInventory {
    pub index: u32,
    pub uuid: String,
    pub model: String,
    pub memory_total_bytes: u64,
    /// Topology group: GPUs sharing one are close (NVLink / PCIe switch).
    #[serde(default)]
    pub group: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: String,
    pub name: String,
    pub spec: JobSpec,
    pub state: JobState,
    pub node: Option<String>,
    pub gpus: Vec<GpuRef>,
    pub container_id: String,
    pub exit_code: Option<i32>,
    pub message: String,
    pub submitted_at_ms: i64,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    /// Log index of the placement: an agent report that has reconciled at
    /// least this revision and shows no container means the container is gone.
    pub placed_index: u64,
    /// Log index of the stop request, same use for STOPPING jobs.
    pub stop_index: u64,
    /// Log index of the submit: the job's age in the queue (kept on requeue).
    #[serde(default)]
    pub seq: u64,
    /// Gang or array this job is a task of; empty for a single job.
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub task_index: u32,
    /// Environment the controller adds (array index; gang rendezvous).
    #[serde(default)]
    pub task_env: Vec<String>,
    /// Stopping because it was preempted (or drained): requeue instead of finishing.
    #[serde(default)]
    pub requeue: bool,
    /// Why it is requeued when not a preemption (a drain), for its message.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub requeue_reason: String,
    #[serde(default)]
    pub preemptions: u32,
    /// Times the restart policy started it again.
    #[serde(default)]
    pub restarts: u32,
    /// A restarted job waits out its backoff: not placed before this.
    #[serde(default)]
    pub not_before_ms: i64,
    /// Version 6, from its placement: the host ports Berth picked (see
    /// `spec::published`), and the CPU and memory held on its host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub picked_ports: Vec<u32>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub millicpus: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub memory_bytes: u64,
}

impl JobRecord {
    /// Back to holding nothing anywhere (requeued after `release`).
    pub fn unplace(&mut self) {
        self.node = None;
        self.gpus.clear();
        self.picked_ports.clear();
        self.millicpus = 0;
        self.memory_bytes = 0;
    }

    /// Which container is this job's: one per preemption and restart.
    pub fn attempt(&self) -> u32 {
        self.preemptions + self.restarts
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    pub job_id: String,
    pub node: String,
    pub gpus: Vec<GpuRef>,
    /// Version 6: the host ports picked for the job (`spec::ports_to_pick`
    /// order), and the CPU and memory it holds there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u32>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub millicpus: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub memory_bytes: u64,
}
