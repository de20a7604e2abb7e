//! The replicated state machine: nodes, jobs, the FIFO queue and who holds
//! which GPU. `apply` is deterministic (no clock, no randomness, no IO): every
//! input it needs travels inside the `Command`, so a log replayed on any replica
//! yields the same state. It re-checks every placement, so a stale or buggy
//! plan is rejected instead of giving one GPU to two live jobs.
//!
//! `place` holds the placement re-check, preemption and gang rules;
//! `groups` the tasks of gangs and arrays; `lifecycle` a job's moves from
//! pulling to its end (restarts, requeues); `update` what changes live.

mod constraint;
mod groups;
mod lifecycle;
mod place;
mod update;

use lifecycle::Finish;
pub use lifecycle::{restart_backoff_ms, restarts_again};

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rustc_hash::FxHashMap;

use berth_proto::v1::{GpuRef, JobSpec, JobState};
use serde::{Deserialize, Serialize};

pub use constraint::Constraint;
pub use groups::{GroupKind, GroupRecord};

/// A node as registered: inventory only. Telemetry is not replicated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    pub agent_addr: String,
    pub gpu_backend: String,
    pub gpus: Vec<GpuInventory>,
    pub docker_version: String,
    /// Placement labels (agent `--label key=value`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
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
    /// Stopping because it was preempted: requeue instead of finishing.
    #[serde(default)]
    pub requeue: bool,
    #[serde(default)]
    pub preemptions: u32,
    /// Times the restart policy started it again.
    #[serde(default)]
    pub restarts: u32,
    /// A restarted job waits out its backoff: not placed before this.
    #[serde(default)]
    pub not_before_ms: i64,
}

impl JobRecord {
    /// Which container is this job's: one per preemption and restart.
    pub fn attempt(&self) -> u32 {
        self.preemptions + self.restarts
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    pub job_id: String,
    pub node: String,
    pub gpus: Vec<GpuRef>,
}

/// Everything that changes the state goes through the log as one of these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// First command of a new cluster's log.
    Init {
        cluster_id: String,
    },
    RegisterNode(NodeRecord),
    Submit {
        id: String,
        name: String,
        // Boxed: a spec is far bigger than every other command.
        spec: Box<JobSpec>,
        at_ms: i64,
        /// Client-chosen idempotency key; empty for none.
        #[serde(default)]
        request_id: String,
    },
    Place {
        placements: Vec<Placement>,
        /// Jobs to stop and requeue to make room (applied first).
        #[serde(default)]
        preemptions: Vec<String>,
    },
    /// Sets (Some) or removes (None) a user's whole-GPU quota.
    SetQuota {
        user: String,
        gpus: Option<u32>,
    },
    /// The job's node lacks its image and is receiving it (PLACED → PULLING).
    Pulling {
        job_id: String,
    },
    Started {
        job_id: String,
        container_id: String,
        at_ms: i64,
    },
    Exited {
        job_id: String,
        exit_code: i32,
        at_ms: i64,
    },
    Failed {
        job_id: String,
        message: String,
        at_ms: i64,
    },
    Cancel {
        job_id: String,
        at_ms: i64,
    },
    /// Drops jobs that finished before `before_ms` (a group only once all
    /// its tasks did), with their request ids: the leader's retention, so
    /// the state, snapshots and `ps -a` do not grow forever.
    Forget {
        before_ms: i64,
    },
    /// `berth update`: new limits or restart policy (0 / empty: unchanged).
    Update {
        job_id: String,
        memory_bytes: u64,
        nano_cpus: u64,
        restart: String,
    },
}

/// Why `apply` refused a command. Refusals are deterministic too, so every
/// replica refuses the same commands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("no such job {0}")]
    NoSuchJob(String),
    #[error("no such node {0}")]
    NoSuchNode(String),
    #[error("job id {0} already exists")]
    DuplicateId(String),
    #[error("the name {0:?} is already used by live job {1}; stop it or choose another --name")]
    NameInUse(String, String),
    #[error("job {0} is {1} and cannot {2}")]
    BadTransition(String, &'static str, &'static str),
    #[error("placement of {job} refused: {why}")]
    BadPlacement { job: String, why: String },
    #[error("job {job} cannot be updated: {why}")]
    BadUpdate { job: String, why: String },
    #[error("undecodable command: {0}")]
    Malformed(String),
}

/// What applying one command changed: the jobs whose state moved, for events,
/// waiters and the scheduler.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Applied {
    pub jobs: Vec<String>,
    pub node: Option<String>,
    /// Placements refused by the re-check (the rest of a plan still applies).
    pub rejected: Vec<Rejection>,
}

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
    /// Node → a stamp that changes whenever what its jobs hold changes, so
    /// the leader can reuse its scheduling view of an unchanged node.
    #[serde(skip)]
    node_stamp: FxHashMap<String, u64>,
    #[serde(skip)]
    stamps: u64,
}

impl State {
    /// Rebuilds the derived indexes (after deserialising a snapshot).
    pub fn reindex(&mut self) {
        self.gpu_holder.clear();
        self.live_names.clear();
        self.node_jobs.clear();
        self.ports.clear();
        self.slices.clear();
        self.exclusive.clear();
        self.user_gpus.clear();
        self.group_live.clear();
        let ids: Vec<String> = self.jobs.keys().cloned().collect();
        for id in ids {
            let job = &self.jobs[&id];
            if job.state.is_live() {
                self.live_names.insert(job.name.clone(), job.id.clone());
            }
            if job.state.holds_resources() {
                self.hold(&id);
            }
        }
    }

    /// Indexes what a placed job holds: GPUs (whole or a slice), ports,
    /// the host for an exclusive job, quota and array counts.
    fn hold(&mut self, id: &str) {
        let Some(node) = self.jobs[id].node.clone() else {
            return;
        };
        self.touch(&node);
        let job = &self.jobs[id];
        self.node_jobs
            .entry(node.clone())
            .or_default()
            .insert(id.to_string());
        for p in &job.spec.ports {
            let key = (node.clone(), p.host_port, norm_proto(&p.protocol));
            self.ports.insert(key, id.to_string());
        }
        for g in &job.gpus {
            if is_slice(&job.spec) {
                self.slices
                    .entry(g.uuid.clone())
                    .or_default()
                    .insert(id.to_string(), job.spec.gpu_memory_bytes);
            } else {
                self.gpu_holder.insert(g.uuid.clone(), id.to_string());
            }
        }
        if job.spec.exclusive {
            self.exclusive.insert(node, id.to_string());
        }
        *self.user_gpus.entry(job.spec.user.clone()).or_default() += job.spec.gpus;
        if !job.group.is_empty() {
            *self.group_live.entry(job.group.clone()).or_default() += 1;
        }
    }

    /// Jobs holding resources on `node`, by id.
    pub fn jobs_on(&self, node: &str) -> impl Iterator<Item = &JobRecord> {
        self.node_jobs
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|id| self.jobs.get(id))
    }

    /// How many jobs hold resources on `node`.
    pub fn live_jobs_on(&self, node: &str) -> usize {
        self.node_jobs.get(node).map_or(0, BTreeSet::len)
    }

    /// Jobs holding one of `node`'s GPUs, whole or a slice, each once: at
    /// most a few per GPU, however many CPU-only jobs share the host.
    pub fn gpu_jobs_on<'a>(&'a self, node: &'a NodeRecord) -> impl Iterator<Item = &'a JobRecord> {
        let mut seen = BTreeSet::new();
        node.gpus
            .iter()
            .flat_map(move |g| {
                let whole = self.gpu_holder.get(&g.uuid).into_iter();
                let slices = self.slices.get(&g.uuid).into_iter().flat_map(|s| s.keys());
                whole.chain(slices)
            })
            .filter(move |id| seen.insert(id.as_str()))
            .filter_map(|id| self.jobs.get(id))
    }

    /// Marks `node`'s resources as changed (see `node_stamp`).
    fn touch(&mut self, node: &str) {
        self.stamps += 1;
        match self.node_stamp.get_mut(node) {
            Some(s) => *s = self.stamps,
            None => {
                self.node_stamp.insert(node.to_string(), self.stamps);
            }
        }
    }

    fn touch_job_node(&mut self, id: &str) {
        if let Some(node) = self.jobs.get(id).and_then(|j| j.node.clone()) {
            self.touch(&node);
        }
    }

    /// Changes whenever the jobs holding resources on `node` change, or
    /// anything of theirs an agent acts on (state, spec): the leader reuses
    /// its scheduling view of an unchanged node, and sends its agent
    /// nothing new.
    pub fn node_stamp(&self, node: &str) -> u64 {
        self.node_stamp.get(node).copied().unwrap_or(0)
    }

    /// The live job holding a GPU whole, by uuid.
    pub fn gpu_holder(&self, uuid: &str) -> Option<&str> {
        self.gpu_holder.get(uuid).map(String::as_str)
    }

    /// Slice jobs sharing a GPU, and the bytes each reserved.
    pub fn gpu_slices(&self, uuid: &str) -> Option<&BTreeMap<String, u64>> {
        self.slices.get(uuid).filter(|s| !s.is_empty())
    }

    /// The live exclusive job owning `node`, if any.
    pub fn exclusive_holder(&self, node: &str) -> Option<&str> {
        self.exclusive.get(node).map(String::as_str)
    }

    /// Whole GPUs held by `user`'s live jobs.
    pub fn user_gpus(&self, user: &str) -> u32 {
        self.user_gpus.get(user).copied().unwrap_or(0)
    }

    /// Tasks of `group` holding resources now.
    pub fn group_live(&self, group: &str) -> u32 {
        self.group_live.get(group).copied().unwrap_or(0)
    }

    /// The job a submit with this request id created, if any.
    pub fn job_for_request(&self, request_id: &str) -> Option<&str> {
        if request_id.is_empty() {
            return None;
        }
        self.requests.get(request_id).map(String::as_str)
    }

    pub fn live_job_named(&self, name: &str) -> Option<&str> {
        self.live_names.get(name).map(String::as_str)
    }

    /// Applies the command at `index`. Commands must arrive in index order.
    pub fn apply(&mut self, index: u64, cmd: &Command) -> Result<Applied, Rejection> {
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
            Command::SetQuota { user, gpus } => {
                match gpus {
                    Some(n) => self.quotas.insert(user.clone(), *n),
                    None => self.quotas.remove(user),
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
            Command::Update {
                job_id,
                memory_bytes,
                nano_cpus,
                restart,
            } => self.update(job_id, *memory_bytes, *nano_cpus, restart),
        }
    }

    /// The live job on `node` publishing `host_port`, if any.
    pub fn host_port_holder(&self, node: &str, host_port: u32, protocol: &str) -> Option<&str> {
        self.ports
            .get(&(node.to_string(), host_port, norm_proto(protocol)))
            .map(String::as_str)
    }

    /// (host port, protocol) published by live jobs on `node`.
    pub fn ports_on<'a>(&'a self, node: &'a str) -> impl Iterator<Item = (u32, String)> + 'a {
        self.ports
            .range((node.to_string(), 0, String::new())..)
            .take_while(move |((n, _, _), _)| n == node)
            .map(|((_, port, proto), _)| (*port, proto.clone()))
    }

    /// Frees what a job held: GPUs or its slice, ports, the host, its name.
    fn release(&mut self, id: &str) {
        if let Some(node) = self.jobs[id].node.clone() {
            self.touch(&node);
        }
        let job = &self.jobs[id];
        let slice = is_slice(&job.spec);
        for g in &job.gpus {
            if slice {
                if let Some(s) = self.slices.get_mut(&g.uuid) {
                    s.remove(id);
                }
            } else if self.gpu_holder.get(&g.uuid).map(String::as_str) == Some(id) {
                self.gpu_holder.remove(&g.uuid);
            }
        }
        if self.live_names.get(&job.name).map(String::as_str) == Some(id) {
            self.live_names.remove(&job.name);
        }
        if let Some(node) = &job.node {
            let was_holding = self
                .node_jobs
                .get_mut(node)
                .is_some_and(|set| set.remove(id));
            for p in &job.spec.ports {
                let key = (node.clone(), p.host_port, norm_proto(&p.protocol));
                if self.ports.get(&key).map(String::as_str) == Some(id) {
                    self.ports.remove(&key);
                }
            }
            if self.exclusive.get(node).map(String::as_str) == Some(id) {
                self.exclusive.remove(node);
            }
            if was_holding {
                if let Some(n) = self.user_gpus.get_mut(&job.spec.user) {
                    *n = n.saturating_sub(job.spec.gpus);
                }
                if let Some(n) = self.group_live.get_mut(&job.group) {
                    *n = n.saturating_sub(1);
                }
            }
        }
    }

    fn job_mut(&mut self, id: &str) -> Result<&mut JobRecord, Rejection> {
        self.jobs
            .get_mut(id)
            .ok_or_else(|| Rejection::NoSuchJob(id.to_string()))
    }
}

/// A shared-GPU job: no whole GPUs, a memory slice of one.
pub fn is_slice(spec: &JobSpec) -> bool {
    spec.gpus == 0 && spec.gpu_memory_bytes > 0
}

/// Docker treats an empty protocol as tcp.
pub fn proto_eq(a: &str, b: &str) -> bool {
    norm_proto(a) == norm_proto(b)
}

pub fn norm_proto(p: &str) -> String {
    if p.is_empty() {
        "tcp".into()
    } else {
        p.to_ascii_lowercase()
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod policy_tests;

#[cfg(test)]
mod format_view;

#[cfg(test)]
mod fixture_gen;
