//! The replicated state machine: nodes, jobs, the FIFO queue and who holds
//! which GPU. `apply` is deterministic (no clock, no randomness, no IO): every
//! input it needs travels inside the `Command`, so a log replayed on any replica
//! yields the same state. It re-checks every placement, so a stale or buggy
//! plan is rejected instead of giving one GPU to two live jobs.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use berth_proto::v1::{GpuRef, JobSpec, JobState};
use serde::{Deserialize, Serialize};

/// A node as registered: inventory only. Telemetry is not replicated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    pub agent_addr: String,
    pub gpu_backend: String,
    pub gpus: Vec<GpuInventory>,
    pub docker_version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuInventory {
    pub index: u32,
    pub uuid: String,
    pub model: String,
    pub memory_total_bytes: u64,
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
        spec: JobSpec,
        at_ms: i64,
        /// Client-chosen idempotency key; empty for none.
        #[serde(default)]
        request_id: String,
    },
    Place {
        placements: Vec<Placement>,
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
    /// Derived indexes, rebuilt after a snapshot is loaded.
    #[serde(skip)]
    gpu_holder: HashMap<String, String>,
    #[serde(skip)]
    live_names: HashMap<String, String>,
    /// Node → jobs holding resources there (what its agent must run).
    #[serde(skip)]
    node_jobs: HashMap<String, BTreeSet<String>>,
    /// (node, host port, protocol) → live job publishing it.
    #[serde(skip)]
    ports: BTreeMap<(String, u32, String), String>,
}

impl State {
    /// Rebuilds the derived indexes (after deserialising a snapshot).
    pub fn reindex(&mut self) {
        self.gpu_holder.clear();
        self.live_names.clear();
        self.node_jobs.clear();
        self.ports.clear();
        for job in self.jobs.values() {
            if job.state.is_live() {
                self.live_names.insert(job.name.clone(), job.id.clone());
            }
            if job.state.holds_resources() {
                if let Some(node) = &job.node {
                    self.node_jobs
                        .entry(node.clone())
                        .or_default()
                        .insert(job.id.clone());
                    for p in &job.spec.ports {
                        let key = (node.clone(), p.host_port, norm_proto(&p.protocol));
                        self.ports.insert(key, job.id.clone());
                    }
                }
                for g in &job.gpus {
                    self.gpu_holder.insert(g.uuid.clone(), job.id.clone());
                }
            }
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

    /// The live job holding a GPU, by uuid.
    pub fn gpu_holder(&self, uuid: &str) -> Option<&str> {
        self.gpu_holder.get(uuid).map(String::as_str)
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
                let applied = self.submit(id, name, spec, *at_ms)?;
                if !request_id.is_empty() {
                    self.requests.insert(request_id.clone(), id.clone());
                }
                Ok(applied)
            }
            Command::Place { placements } => Ok(self.place(index, placements)),
            Command::Started {
                job_id,
                container_id,
                at_ms,
            } => self.started(job_id, container_id, *at_ms),
            Command::Exited {
                job_id,
                exit_code,
                at_ms,
            } => self.finish(job_id, Finish::Exited(*exit_code), *at_ms),
            Command::Failed {
                job_id,
                message,
                at_ms,
            } => self.finish(job_id, Finish::Failed(message.clone()), *at_ms),
            Command::Cancel { job_id, at_ms } => self.cancel(index, job_id, *at_ms),
        }
    }

    fn submit(
        &mut self,
        id: &str,
        name: &str,
        spec: &JobSpec,
        at_ms: i64,
    ) -> Result<Applied, Rejection> {
        if self.jobs.contains_key(id) {
            return Err(Rejection::DuplicateId(id.to_string()));
        }
        if let Some(holder) = self.live_names.get(name) {
            return Err(Rejection::NameInUse(name.to_string(), holder.clone()));
        }
        let job = JobRecord {
            id: id.to_string(),
            name: name.to_string(),
            spec: spec.clone(),
            state: JobState::Queued,
            node: None,
            gpus: Vec::new(),
            container_id: String::new(),
            exit_code: None,
            message: String::new(),
            submitted_at_ms: at_ms,
            started_at_ms: 0,
            finished_at_ms: 0,
            placed_index: 0,
            stop_index: 0,
        };
        self.live_names.insert(name.to_string(), id.to_string());
        self.jobs.insert(id.to_string(), job);
        self.queue.push_back(id.to_string());
        Ok(Applied {
            jobs: vec![id.to_string()],
            ..Applied::default()
        })
    }

    fn place(&mut self, index: u64, placements: &[Placement]) -> Applied {
        let mut applied = Applied::default();
        let mut placed = std::collections::HashSet::new();
        for p in placements {
            match self.check_placement(p) {
                Ok(()) => {
                    for g in &p.gpus {
                        self.gpu_holder.insert(g.uuid.clone(), p.job_id.clone());
                    }
                    self.node_jobs
                        .entry(p.node.clone())
                        .or_default()
                        .insert(p.job_id.clone());
                    for port in &self.jobs[&p.job_id].spec.ports {
                        let key = (p.node.clone(), port.host_port, norm_proto(&port.protocol));
                        self.ports.insert(key, p.job_id.clone());
                    }
                    placed.insert(p.job_id.clone());
                    let job = self.jobs.get_mut(&p.job_id).expect("checked");
                    job.state = JobState::Placed;
                    job.node = Some(p.node.clone());
                    job.gpus = p.gpus.clone();
                    job.placed_index = index;
                    job.message.clear();
                    applied.jobs.push(p.job_id.clone());
                }
                Err(why) => applied.rejected.push(Rejection::BadPlacement {
                    job: p.job_id.clone(),
                    why,
                }),
            }
        }
        // One pass over the queue for the whole plan, not one per placement.
        if !placed.is_empty() {
            self.queue.retain(|id| !placed.contains(id));
        }
        applied
    }

    /// The invariants a placement must keep, whatever the scheduler thought.
    fn check_placement(&self, p: &Placement) -> Result<(), String> {
        let job = self.jobs.get(&p.job_id).ok_or("no such job")?;
        if job.state != JobState::Queued {
            return Err(format!("job is {}", job.state.word()));
        }
        let node = self.nodes.get(&p.node).ok_or("no such node")?;
        if p.gpus.len() != job.spec.gpus as usize {
            return Err(format!(
                "{} GPUs given, {} asked",
                p.gpus.len(),
                job.spec.gpus
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for g in &p.gpus {
            if !node
                .gpus
                .iter()
                .any(|inv| inv.uuid == g.uuid && inv.index == g.index)
            {
                return Err(format!("GPU {} is not on node {}", g.uuid, p.node));
            }
            if !seen.insert(&g.uuid) {
                return Err(format!("GPU {} given twice", g.uuid));
            }
            if let Some(holder) = self.gpu_holder.get(&g.uuid) {
                return Err(format!("GPU {} is held by live job {holder}", g.uuid));
            }
        }
        for port in &job.spec.ports {
            if let Some(other) = self.host_port_holder(&p.node, port.host_port, &port.protocol) {
                return Err(format!(
                    "host port {} is held by live job {other}",
                    port.host_port
                ));
            }
        }
        Ok(())
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

    fn started(&mut self, id: &str, container_id: &str, at_ms: i64) -> Result<Applied, Rejection> {
        let job = self.job_mut(id)?;
        match job.state {
            JobState::Placed => job.state = JobState::Running,
            // The stop raced the start: keep stopping, but remember the container.
            JobState::Stopping => {}
            other => return Err(Rejection::BadTransition(id.into(), other.word(), "start")),
        }
        job.container_id = container_id.to_string();
        job.started_at_ms = at_ms;
        Ok(Applied {
            jobs: vec![id.to_string()],
            ..Applied::default()
        })
    }

    fn finish(&mut self, id: &str, how: Finish, at_ms: i64) -> Result<Applied, Rejection> {
        let job = self.job_mut(id)?;
        let state = job.state;
        if !state.holds_resources() {
            return Err(Rejection::BadTransition(id.into(), state.word(), "finish"));
        }
        match how {
            Finish::Exited(code) => {
                job.exit_code = Some(code);
                job.state = if state == JobState::Stopping {
                    JobState::Cancelled
                } else {
                    JobState::Exited
                };
            }
            Finish::Failed(message) => {
                job.message = message;
                job.state = if state == JobState::Stopping {
                    JobState::Cancelled
                } else {
                    JobState::Failed
                };
            }
        }
        job.finished_at_ms = at_ms;
        self.release(id);
        Ok(Applied {
            jobs: vec![id.to_string()],
            ..Applied::default()
        })
    }

    fn cancel(&mut self, index: u64, id: &str, at_ms: i64) -> Result<Applied, Rejection> {
        let job = self.job_mut(id)?;
        match job.state {
            JobState::Queued => {
                job.state = JobState::Cancelled;
                job.finished_at_ms = at_ms;
                self.queue.retain(|q| q != id);
                self.release(id);
            }
            JobState::Placed | JobState::Running => {
                job.state = JobState::Stopping;
                job.stop_index = index;
            }
            other => return Err(Rejection::BadTransition(id.into(), other.word(), "stop")),
        }
        Ok(Applied {
            jobs: vec![id.to_string()],
            ..Applied::default()
        })
    }

    /// Frees what a finished job held: its GPUs and its name.
    fn release(&mut self, id: &str) {
        let job = &self.jobs[id];
        for g in &job.gpus {
            if self.gpu_holder.get(&g.uuid).map(String::as_str) == Some(id) {
                self.gpu_holder.remove(&g.uuid);
            }
        }
        if self.live_names.get(&job.name).map(String::as_str) == Some(id) {
            self.live_names.remove(&job.name);
        }
        if let Some(node) = &job.node {
            if let Some(set) = self.node_jobs.get_mut(node) {
                set.remove(id);
            }
            for p in &job.spec.ports {
                let key = (node.clone(), p.host_port, norm_proto(&p.protocol));
                if self.ports.get(&key).map(String::as_str) == Some(id) {
                    self.ports.remove(&key);
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

enum Finish {
    Exited(i32),
    Failed(String),
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
#[path = "state_tests.rs"]
mod tests;
