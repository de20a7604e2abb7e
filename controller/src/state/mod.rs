//! The replicated state machine: nodes, jobs, the FIFO queue and who holds
//! which GPU. `apply` is deterministic (no clock, no randomness, no IO): every
//! input it needs travels inside the `Command`, so a log replayed on any replica
//! yields the same state. It re-checks every placement, so a stale or buggy
//! plan is rejected instead of giving one GPU to two live jobs.
//!
//! Layout:
//! - `spec`, `records`: what the log records (jobs' specs, nodes, jobs,
//!   placements) — the state's own types, not the API's;
//!   `command`: the commands, their outcomes and refusals;
//!   `format`: their versioned encoding in log entries and snapshots.
//! - `indexes`: derived indexes, rebuilt from the records.
//! - `place`: the placement re-check, preemption and gang rules; `groups`:
//!   the tasks of gangs and arrays; `lifecycle`: a job's moves from pulling
//!   to its end (restarts, requeues); `update`: what changes live;
//!   `nodes`: cordon, drain, removal, and lost hosts; `usage`: the ledger
//!   of what each run used, kept past retention, and its reports.

mod access;
mod command;
mod constraint;
pub mod format;
mod groups;
mod indexes;
mod lifecycle;
mod nodes;
mod place;
mod records;
mod spec;
mod update;
pub mod usage;

pub use lifecycle::restart_backoff_ms;
use lifecycle::Finish;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rustc_hash::FxHashMap;

use serde::{Deserialize, Serialize};

pub use access::TokenRecord;
pub use command::{Applied, Command, Rejection};
pub use constraint::Constraint;
pub use groups::{GroupKind, GroupRecord};
pub use indexes::{norm_proto, proto_eq, whole_gpus};
pub use nodes::Cordon;
pub use records::{GpuInventory, JobRecord, NodeRecord, Placement};
pub use spec::{
    is_slice, ports_to_pick, published, rendezvous_port, ArrayRange, GpuBackend, GpuRef, JobSpec,
    JobState, Mount, OnHostLost, PortMapping, RestartPolicy, Ulimit,
};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct State {
    pub cluster_id: String,
    pub applied_index: u64,
    pub nodes: BTreeMap<String, NodeRecord>,
    pub jobs: BTreeMap<String, JobRecord>,
    /// Queued job ids, oldest first.
    pub queue: VecDeque<String>,
    /// Submit request ids seen → the job each created (idempotent retries).
    #[serde(default)]
    pub requests: BTreeMap<String, String>,
    /// Gangs and arrays by group id.
    #[serde(default)]
    pub groups: BTreeMap<String, GroupRecord>,
    /// User → whole GPUs their live jobs may hold at once.
    #[serde(default)]
    pub quotas: BTreeMap<String, u32>,
    /// User → (thousandths of a core, bytes) their live jobs may hold at
    /// once (format 6; 0 in one: no limit on it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub host_quotas: BTreeMap<String, (u64, u64)>,
    /// Tokens by their public id (hashes only).
    #[serde(default)]
    pub tokens: BTreeMap<String, TokenRecord>,
    /// The admins' mount and privilege policy; `None`: the built-in default.
    #[serde(default)]
    pub policy: Option<berth_proto::policy::Policy>,
    /// Log index of the last policy change (0: never changed), so the
    /// agents' streams send the policy only when it changed.
    #[serde(default)]
    pub policy_index: u64,
    /// Cordoned and draining hosts, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cordons: BTreeMap<String, Cordon>,
    /// What each run of a job used (format 5 on).
    #[serde(default, skip_serializing_if = "usage::Ledger::is_empty")]
    pub usage: usage::Ledger,
    /// The log format of the entry being applied: rules a format added
    /// apply only to its entries (see `usage`).
    #[serde(skip)]
    entry_version: u8,
    /// Derived indexes, rebuilt after a snapshot is loaded.
    #[serde(skip)]
    gpu_holder: FxHashMap<String, String>,
    #[serde(skip)]
    live_names: FxHashMap<String, String>,
    /// Node → jobs holding resources there (what its agent must run).
    #[serde(skip)]
    node_jobs: FxHashMap<String, BTreeSet<String>>,
    /// (node, host port, protocol) → live job publishing it.
    #[serde(skip)]
    ports: BTreeMap<(String, u32, String), String>,
    /// GPU uuid → slice jobs on it and the bytes each reserved.
    #[serde(skip)]
    slices: FxHashMap<String, BTreeMap<String, u64>>,
    /// Node → the live exclusive job owning it.
    #[serde(skip)]
    exclusive: FxHashMap<String, String>,
    /// User → whole GPUs held by their live jobs (quotas).
    #[serde(skip)]
    user_gpus: FxHashMap<String, u32>,
    /// Group → its tasks holding resources (array caps).
    #[serde(skip)]
    group_live: FxHashMap<String, u32>,
    /// Node → (thousandths of a core, bytes) live jobs hold there.
    #[serde(skip)]
    node_held: FxHashMap<String, (u64, u64)>,
    /// User → (thousandths of a core, bytes) their live jobs hold.
    #[serde(skip)]
    user_held: FxHashMap<String, (u64, u64)>,
    /// Node → a stamp that changes whenever what its jobs hold changes, so
    /// the leader can reuse its scheduling view of an unchanged node.
    #[serde(skip)]
    node_stamp: FxHashMap<String, u64>,
    #[serde(skip)]
    stamps: u64,
}

impl State {
    /// Applies the command at `index`. Commands must arrive in index order.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> Result<Applied, Rejection> {
        self.apply_entry(index, format::VERSION, cmd)
    }

    /// `apply` of an entry written in log format `version`.
    pub fn apply_entry(
        &mut self,
        index: u64,
        version: u8,
        cmd: &Command,
    ) -> Result<Applied, Rejection> {
        self.entry_version = version;
        debug_assert!(index > self.applied_index, "log replayed out of order");
        self.applied_index = index;
        match cmd {
            Command::Init { cluster_id } => {
                if self.cluster_id.is_empty() {
                    self.cluster_id = cluster_id.clone();
                }
                Ok(Applied::default())
            }
            Command::RegisterNode(node) => {
                self.nodes.insert(node.name.clone(), node.clone());
                self.touch(&node.name);
                Ok(Applied {
                    node: Some(node.name.clone()),
                    ..Applied::default()
                })
            }
            Command::Submit {
                id,
                name,
                spec,
                at_ms,
                request_id,
            } => {
                // A retried submit is applied as the job it first created.
                if let Some(existing) = self.job_for_request(request_id) {
                    return Ok(Applied {
                        jobs: vec![existing.to_string()],
                        ..Applied::default()
                    });
                }
                let applied = self.submit(index, id, name, spec, *at_ms)?;
                if !request_id.is_empty() {
                    self.requests.insert(request_id.clone(), id.clone());
                }
                Ok(applied)
            }
            Command::Place {
                placements,
                preemptions,
            } => Ok(self.place(index, placements, preemptions)),
            Command::SetQuota {
                user,
                gpus,
                cpus_memory,
            } => {
                match gpus {
                    Some(n) => self.quotas.insert(user.clone(), *n),
                    None => self.quotas.remove(user),
                };
                // The whole quota is replaced: an entry without CPU and
                // memory (every older one) leaves none.
                match cpus_memory {
                    Some(q) => self.host_quotas.insert(user.clone(), *q),
                    None => self.host_quotas.remove(user),
                };
                Ok(Applied::default())
            }
            Command::Pulling { job_id } => self.pulling(job_id),
            Command::Started {
                job_id,
                container_id,
                at_ms,
            } => self.started(job_id, container_id, *at_ms),
            Command::Exited {
                job_id,
                exit_code,
                at_ms,
            } => self.finish(index, job_id, Finish::Exited(*exit_code), *at_ms),
            Command::Failed {
                job_id,
                message,
                at_ms,
            } => self.finish(index, job_id, Finish::Failed(message.clone()), *at_ms),
            Command::Cancel { job_id, at_ms } => self.cancel(index, job_id, *at_ms),
            Command::Forget { before_ms } => Ok(self.forget(*before_ms)),
            Command::CompactUsage { before_ms } => {
                self.usage.compact(*before_ms);
                Ok(Applied::default())
            }
            Command::Update {
                job_id,
                memory_bytes,
                nano_cpus,
                restart,
            } => self.update(job_id, *memory_bytes, *nano_cpus, *restart),
            Command::CreateToken(t) => {
                self.tokens.insert(t.id.clone(), t.clone());
                Ok(Applied::default())
            }
            Command::RevokeTokens { ids } => {
                for id in ids {
                    self.tokens.remove(id);
                }
                Ok(Applied::default())
            }
            Command::UseJoinToken { id } => match self.tokens.remove(id) {
                Some(_) => Ok(Applied::default()),
                // Two nodes raced for one one-time token: the second loses.
                None => Err(Rejection::TokenUsed(id.clone())),
            },
            Command::Cordon {
                node,
                drain_deadline_ms,
                at_ms,
            } => self.cordon(node, *drain_deadline_ms, *at_ms),
            Command::Uncordon { node } => self.uncordon(node),
            Command::Evict { job_ids, reason } => Ok(self.evict(index, job_ids, reason)),
            Command::RemoveNode { node, at_ms } => self.remove_node(index, node, *at_ms),
            Command::Lost {
                job_id,
                message,
                at_ms,
            } => self.lost(index, job_id, message, *at_ms),
            Command::SetPolicy(p) => {
                self.policy = Some(p.clone());
                self.policy_index = index;
                Ok(Applied::default())
            }
        }
    }

    fn job_mut(&mut self, id: &str) -> Result<&mut JobRecord, Rejection> {
        self.jobs
            .get_mut(id)
            .ok_or_else(|| Rejection::NoSuchJob(id.to_string()))
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod policy_tests;

#[cfg(test)]
mod nodes_tests;

#[cfg(test)]
mod format_v4_tests;

#[cfg(test)]
mod format_v5_tests;

#[cfg(test)]
mod format_v6_tests;

#[cfg(test)]
mod test_cmds;

#[cfg(test)]
mod format_view;
