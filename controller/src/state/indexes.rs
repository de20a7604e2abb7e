//! The state's derived indexes: who holds which GPU (whole or a slice),
//! host ports, exclusive hosts, live names, per-node jobs, quota and array
//! counts, and the per-node stamps the leader's caches key on. Not in the
//! log or snapshots: rebuilt from the records (`reindex`), and kept in step
//! by `hold` and `release` as commands apply.

use std::collections::{BTreeMap, BTreeSet};

use super::spec::published;
use super::{is_slice, JobRecord, NodeRecord, State};

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
        self.node_held.clear();
        self.user_held.clear();
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
    pub(super) fn hold(&mut self, id: &str) {
        let Some(node) = self.jobs[id].node.clone() else {
            return;
        };
        self.touch(&node);
        let job = &self.jobs[id];
        self.node_jobs
            .entry(node.clone())
            .or_default()
            .insert(id.to_string());
        for p in published(&job.spec, &job.picked_ports) {
            let key = (node.clone(), p.host_port, norm_proto(&p.protocol));
            self.ports.insert(key, id.to_string());
        }
        let held = self.node_held.entry(node.clone()).or_default();
        held.0 += job.millicpus;
        held.1 += job.memory_bytes;
        let mine = self.user_held.entry(job.spec.user.clone()).or_default();
        mine.0 += job.millicpus;
        mine.1 += job.memory_bytes;
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
        *self.user_gpus.entry(job.spec.user.clone()).or_default() += whole_gpus(job);
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

    /// (thousandths of a core, bytes) of CPU and memory live jobs hold on `node`.
    pub fn held_on(&self, node: &str) -> (u64, u64) {
        self.node_held.get(node).copied().unwrap_or_default()
    }

    /// (thousandths of a core, bytes) of CPU and memory `user`'s live jobs hold.
    pub fn user_held(&self, user: &str) -> (u64, u64) {
        self.user_held.get(user).copied().unwrap_or_default()
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
    pub(super) fn touch(&mut self, node: &str) {
        self.stamps += 1;
        match self.node_stamp.get_mut(node) {
            Some(s) => *s = self.stamps,
            None => {
                self.node_stamp.insert(node.to_string(), self.stamps);
            }
        }
    }

    pub(super) fn touch_job_node(&mut self, id: &str) {
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

    /// Every job on GPU `uuid`: its whole-GPU holder, or the jobs sharing
    /// it by slices.
    pub fn gpu_jobs<'a>(&'a self, uuid: &str) -> impl Iterator<Item = &'a JobRecord> + 'a {
        self.gpu_holder(uuid)
            .into_iter()
            .chain(
                self.gpu_slices(uuid)
                    .into_iter()
                    .flat_map(|m| m.keys().map(String::as_str)),
            )
            .filter_map(|id| self.jobs.get(id))
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

    /// `user`'s jobs waiting in the queue. A scan of the queue: it serves
    /// `quota list` and the per-user queue cap, not the scheduler.
    pub fn queued_of(&self, user: &str) -> usize {
        self.queue
            .iter()
            .filter(|id| self.jobs.get(*id).is_some_and(|j| j.spec.user == user))
            .count()
    }

    /// The mount and privilege policy in force: the admins', else the
    /// built-in default.
    pub fn policy_in_force(&self) -> berth_proto::policy::Policy {
        self.policy.clone().unwrap_or_default()
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
    pub(super) fn release(&mut self, id: &str) {
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
            for p in published(&job.spec, &job.picked_ports) {
                let key = (node.clone(), p.host_port, norm_proto(&p.protocol));
                if self.ports.get(&key).map(String::as_str) == Some(id) {
                    self.ports.remove(&key);
                }
            }
            if self.exclusive.get(node).map(String::as_str) == Some(id) {
                self.exclusive.remove(node);
            }
            if was_holding {
                if let Some(held) = self.node_held.get_mut(node) {
                    held.0 = held.0.saturating_sub(job.millicpus);
                    held.1 = held.1.saturating_sub(job.memory_bytes);
                }
                if let Some(held) = self.user_held.get_mut(&job.spec.user) {
                    held.0 = held.0.saturating_sub(job.millicpus);
                    held.1 = held.1.saturating_sub(job.memory_bytes);
                }
                if let Some(n) = self.user_gpus.get_mut(&job.spec.user) {
                    *n = n.saturating_sub(whole_gpus(job));
                }
                if let Some(n) = self.group_live.get_mut(&job.group) {
                    *n = n.saturating_sub(1);
                }
            }
        }
    }
}

/// Whole GPUs a job holds (or asks, before placement): `--gpus all` is
/// what its host had.
pub fn whole_gpus(job: &JobRecord) -> u32 {
    if job.spec.gpus_all {
        job.gpus.len() as u32
    } else if is_slice(&job.spec) {
        0
    } else {
        job.spec.gpus
    }
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
