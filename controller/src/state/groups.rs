//! Submitting jobs, and the tasks of gangs and arrays: one `Submit` creates
//! every task, so a group is never half-submitted.

use super::{JobSpec, JobState};
use serde::{Deserialize, Serialize};

use super::{Applied, JobRecord, Rejection, State};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupKind {
    /// All tasks placed together on distinct hosts, torn down together.
    Gang,
    /// Independent tasks, one per index, at most `max_running` at once.
    Array,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub id: String,
    pub name: String,
    pub kind: GroupKind,
    /// Task job ids, by rank (gang) or index order (array).
    pub tasks: Vec<String>,
    /// Array concurrency cap; 0 for none (and for gangs).
    pub max_running: u32,
    pub submitted_at_ms: i64,
}

/// Rendezvous port of rank 0 when the spec names none (torchrun's default).
pub const DEFAULT_MASTER_PORT: u32 = 29500;

impl State {
    pub(super) fn submit(
        &mut self,
        index: u64,
        id: &str,
        name: &str,
        spec: &JobSpec,
        at_ms: i64,
    ) -> Result<Applied, Rejection> {
        let tasks = task_list(id, name, spec);
        if tasks.is_empty() {
            return Err(Rejection::Malformed(format!("job {id} has no tasks")));
        }
        if self.jobs.contains_key(id) || self.groups.contains_key(id) {
            return Err(Rejection::DuplicateId(id.to_string()));
        }
        for (_, task_name, _, _) in &tasks {
            if let Some(holder) = self.live_names.get(task_name) {
                return Err(Rejection::NameInUse(task_name.clone(), holder.clone()));
            }
        }
        let group = if tasks.len() > 1 || spec.nodes > 1 || spec.array.is_some() {
            id.to_string()
        } else {
            String::new()
        };
        let mut applied = Applied::default();
        for (task_id, task_name, task_index, env) in &tasks {
            let job = JobRecord {
                id: task_id.clone(),
                name: task_name.clone(),
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
                seq: index,
                group: group.clone(),
                task_index: *task_index,
                task_env: env.clone(),
                requeue: false,
                requeue_reason: String::new(),
                preemptions: 0,
                restarts: 0,
                not_before_ms: 0,
                picked_ports: Vec::new(),
                millicpus: 0,
                memory_bytes: 0,
            };
            self.live_names.insert(task_name.clone(), task_id.clone());
            self.jobs.insert(task_id.clone(), job);
            self.queue.push_back(task_id.clone());
            applied.jobs.push(task_id.clone());
        }
        if !group.is_empty() {
            self.groups.insert(
                id.to_string(),
                GroupRecord {
                    id: id.to_string(),
                    name: name.to_string(),
                    kind: if spec.nodes > 1 {
                        GroupKind::Gang
                    } else {
                        GroupKind::Array
                    },
                    tasks: tasks.into_iter().map(|t| t.0).collect(),
                    max_running: spec.array.as_ref().map_or(0, |a| a.max_running),
                    submitted_at_ms: at_ms,
                },
            );
        }
        Ok(applied)
    }

    /// The gang `group`'s live tasks other than `except`, stopped (placed or
    /// running) or cancelled (queued): one failed task fails the gang.
    pub(super) fn tear_down_gang(
        &mut self,
        index: u64,
        group: &str,
        except: &str,
        at_ms: i64,
    ) -> Vec<String> {
        let Some(g) = self.groups.get(group) else {
            return Vec::new();
        };
        if g.kind != GroupKind::Gang {
            return Vec::new();
        }
        let siblings: Vec<String> = g.tasks.iter().filter(|t| *t != except).cloned().collect();
        let mut changed = Vec::new();
        for t in siblings {
            let live = self
                .jobs
                .get(&t)
                .is_some_and(|j| j.state.is_live() && j.state != JobState::Stopping);
            if live && self.cancel(index, &t, at_ms).is_ok() {
                if let Some(j) = self.jobs.get_mut(&t) {
                    j.message = format!("gang task {except} ended; the gang is torn down");
                }
                changed.push(t);
            }
        }
        changed
    }

    /// Gang rendezvous for torchrun, once every task has a host: rank 0's
    /// host address and port, world size, ranks.
    pub(super) fn gang_env(&mut self, group: &str) {
        let Some(g) = self.groups.get(group) else {
            return;
        };
        let tasks = g.tasks.clone();
        let Some(rank0) = tasks.first().and_then(|t| self.jobs.get(t)) else {
            return;
        };
        let node = rank0.node.clone().unwrap_or_default();
        let addr = self
            .nodes
            .get(&node)
            .map(|n| host_of(&n.agent_addr, &node))
            .unwrap_or(node);
        // On the host network, rank 0's host holds the port (picked by
        // Berth unless the job named one); on a bridge, the named or
        // torchrun's default port inside rank 0's container.
        let port = match super::rendezvous_port(&rank0.spec) {
            Some(_) => super::published(&rank0.spec, &rank0.picked_ports)
                .last()
                .map_or(DEFAULT_MASTER_PORT, |p| p.host_port),
            None if rank0.spec.master_port == 0 => DEFAULT_MASTER_PORT,
            None => rank0.spec.master_port,
        };
        let world = tasks.len();
        for (rank, t) in tasks.iter().enumerate() {
            if let Some(j) = self.jobs.get_mut(t) {
                j.task_env = vec![
                    format!("MASTER_ADDR={addr}"),
                    format!("MASTER_PORT={port}"),
                    format!("WORLD_SIZE={world}"),
                    format!("NODE_RANK={rank}"),
                    format!("RANK={rank}"),
                    format!("BERTH_GANG_ID={group}"),
                ];
            }
        }
    }
}

/// (id, name, index, env) of every task a spec makes: one for a single job.
fn task_list(id: &str, name: &str, spec: &JobSpec) -> Vec<(String, String, u32, Vec<String>)> {
    if spec.nodes > 1 {
        return (0..spec.nodes)
            .map(|r| (format!("{id}.{r}"), format!("{name}.{r}"), r, Vec::new()))
            .collect();
    }
    if let Some(a) = &spec.array {
        if a.end < a.start {
            return Vec::new();
        }
        return (a.start..=a.end)
            .map(|i| {
                (
                    format!("{id}.{i}"),
                    format!("{name}.{i}"),
                    i,
                    vec![
                        format!("BERTH_ARRAY_INDEX={i}"),
                        format!("BERTH_ARRAY_ID={id}"),
                    ],
                )
            })
            .collect();
    }
    vec![(id.to_string(), name.to_string(), 0, Vec::new())]
}

/// The host part of an agent address ("10.0.0.5:7001" → "10.0.0.5"); the
/// node name when the agent listens on every address.
fn host_of(agent_addr: &str, node: &str) -> String {
    let host = agent_addr
        .rsplit_once(':')
        .map_or(agent_addr, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() || host == "0.0.0.0" || host == "::" {
        node.to_string()
    } else {
        host.to_string()
    }
}
