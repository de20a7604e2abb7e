//! The queue as the scheduler sees it, kept up to date as commands apply
//! instead of rebuilt on every pass: at 100,000 queued jobs, walking the
//! state's queue (a hash lookup and a refcount per job, each a cache miss)
//! cost more than scheduling. Applies only note which jobs entered or left
//! the queue; the next snapshot folds those notes in (a sequential pass over
//! slot numbers when jobs left) and shares the list by `Arc`.

use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::scheduler::{normalize_image, QueueKeys, QueuedJob};
use crate::state::Constraint;
use crate::state::{GroupKind, JobRecord, JobSpec, JobState, State};

#[derive(Default)]
pub struct IncrementalQueue {
    jobs: Arc<Vec<Arc<QueuedJob>>>,
    /// `jobs`' ranking keys, packed, kept in step with it.
    keys: Arc<QueueKeys>,
    /// `slots[i]` names `jobs[i]`; slots are never reused.
    slots: Vec<u64>,
    /// Job id (a gang's rank-0 task) → its slot.
    slot_of: FxHashMap<String, u64>,
    next_slot: u64,
    /// Jobs that entered the queue since the last snapshot, in order.
    added: Vec<String>,
    pending: FxHashSet<String>,
    /// Slots of jobs that left the queue since the last snapshot.
    removed: FxHashSet<u64>,
    /// Built from scratch at the next snapshot (new leader state, restore).
    stale: bool,
    /// Arrays with a cap that have queued tasks: group → how many, and the
    /// group of each such slot (the snapshot needs their running counts).
    capped: FxHashMap<String, usize>,
    slot_group: FxHashMap<u64, String>,
}

impl IncrementalQueue {
    pub fn new() -> IncrementalQueue {
        IncrementalQueue {
            stale: true,
            ..IncrementalQueue::default()
        }
    }

    /// Capped arrays with tasks in the queue (as of the last snapshot).
    pub fn capped_groups(&self) -> impl Iterator<Item = &String> {
        self.capped.keys()
    }

    /// After a restore: everything is rebuilt at the next snapshot.
    pub fn reset(&mut self) {
        *self = IncrementalQueue::new();
    }

    /// Notes what applying a command did to the queue: `changed` are the
    /// jobs whose state moved.
    pub fn note(&mut self, state: &State, changed: &[String]) {
        if self.stale {
            return;
        }
        for id in changed {
            let queued = state
                .jobs
                .get(id)
                .is_some_and(|j| j.state == JobState::Queued);
            if queued {
                if !self.slot_of.contains_key(id) && self.pending.insert(id.clone()) {
                    self.added.push(id.clone());
                }
            } else if let Some(slot) = self.slot_of.remove(id) {
                self.removed.insert(slot);
            } else if self.pending.remove(id) {
                self.added.retain(|a| a != id);
            }
        }
    }

    /// The queue now, shared. Call with no snapshot of the previous call
    /// alive (the leader drops its own before proposing), or the list is
    /// copied once.
    pub fn snapshot(&mut self, state: &State) -> Arc<Vec<Arc<QueuedJob>>> {
        if self.stale {
            *self = IncrementalQueue::default();
            self.added = state.queue.iter().cloned().collect();
        }
        if !self.removed.is_empty() {
            let removed = std::mem::take(&mut self.removed);
            // One look per slot, for the jobs, their keys and the slots.
            let keep: Vec<bool> = self.slots.iter().map(|s| !removed.contains(s)).collect();
            let mut kept = keep.iter().copied();
            Arc::make_mut(&mut self.jobs).retain(|_| kept.next().unwrap_or(true));
            let mut kept = keep.iter().copied();
            Arc::make_mut(&mut self.keys)
                .keys
                .retain(|_| kept.next().unwrap_or(true));
            let mut kept = keep.iter().copied();
            self.slots.retain(|_| kept.next().unwrap_or(true));
            for slot in removed {
                if let Some(group) = self.slot_group.remove(&slot) {
                    if let Some(n) = self.capped.get_mut(&group) {
                        *n -= 1;
                        if *n == 0 {
                            self.capped.remove(&group);
                        }
                    }
                }
            }
        }
        if !self.added.is_empty() {
            let jobs = Arc::make_mut(&mut self.jobs);
            let keys = Arc::make_mut(&mut self.keys);
            for id in std::mem::take(&mut self.added) {
                let Some(j) = state.jobs.get(&id).filter(|j| j.state == JobState::Queued) else {
                    continue;
                };
                if let Some(q) = queued(state, j) {
                    self.next_slot += 1;
                    if let Some((group, _)) = q.array.as_ref().filter(|a| a.1 > 0) {
                        *self.capped.entry(group.clone()).or_default() += 1;
                        self.slot_group.insert(self.next_slot, group.clone());
                    }
                    self.slot_of.insert(id, self.next_slot);
                    self.slots.push(self.next_slot);
                    keys.push(&q);
                    jobs.push(Arc::new(q));
                }
            }
            self.pending.clear();
        }
        self.jobs.clone()
    }

    /// The packed ranking keys of the queue the last `snapshot` returned.
    pub fn keys(&self) -> Arc<QueueKeys> {
        self.keys.clone()
    }
}

/// A queued job as the scheduler sees it. A gang is one entry, made from
/// its rank-0 task (its tasks are queued and placed together); the other
/// tasks give `None`.
fn queued(state: &State, j: &JobRecord) -> Option<QueuedJob> {
    let group = state.groups.get(&j.group);
    let gang = group.filter(|g| g.kind == GroupKind::Gang);
    if gang.is_some() && j.task_index != 0 {
        return None;
    }
    Some(QueuedJob {
        id: gang.map_or_else(|| j.id.clone(), |g| g.id.clone()),
        gang: gang.map(|g| g.tasks.clone()).unwrap_or_default(),
        array: group
            .filter(|g| g.kind == GroupKind::Array)
            .map(|g| (g.id.clone(), g.max_running)),
        not_before_ms: j.not_before_ms,
        ..from_spec(&j.spec, j.seq)
    })
}

/// What the scheduler needs of a spec (id, gang and array left empty).
pub fn from_spec(spec: &JobSpec, seq: u64) -> QueuedJob {
    QueuedJob {
        id: String::new(),
        seq,
        user: spec.user.clone(),
        priority: spec.priority,
        gpus: spec.gpus,
        memory: spec.gpu_memory_bytes,
        model: spec.gpu_model.to_lowercase(),
        constraints: spec
            .constraints
            .iter()
            .filter_map(|c| Constraint::parse(c))
            .collect(),
        exclusive: spec.exclusive,
        image: normalize_image(&spec.image),
        ports: spec
            .ports
            .iter()
            .filter(|p| p.host_port != 0)
            .map(|p| (p.host_port, p.protocol.clone()))
            .collect(),
        pick_ports: crate::state::ports_to_pick(spec),
        all_gpus: spec.gpus_all,
        millicpus: spec.nano_cpus.div_ceil(1_000_000),
        // -m is a limit docker enforces: hold at least that much.
        memory_bytes: spec.memory_bytes,
        gang: Vec::new(),
        array: None,
        not_before_ms: 0,
        // Preempting others' jobs is an admin's call.
        own_victims_only: spec.role != "admin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Command, Placement};

    fn submit(s: &mut State, q: &mut IncrementalQueue, index: u64, id: &str) {
        let applied = s
            .apply(
                index,
                &Command::Submit {
                    id: id.into(),
                    name: id.into(),
                    spec: JobSpec {
                        image: "i".into(),
                        ..Default::default()
                    }
                    .into(),
                    at_ms: 0,
                    request_id: String::new(),
                },
            )
            .unwrap();
        q.note(s, &applied.jobs);
    }

    fn ids(q: &Arc<Vec<Arc<QueuedJob>>>) -> Vec<&str> {
        q.iter().map(|j| j.id.as_str()).collect()
    }

    /// The incremental queue always equals one rebuilt from the state.
    #[test]
    fn follows_the_state_queue_through_submits_placements_and_cancels() {
        let mut s = State::default();
        s.apply(
            1,
            &Command::RegisterNode(crate::state::NodeRecord {
                name: "n".into(),
                ..Default::default()
            }),
        )
        .unwrap();
        let mut q = IncrementalQueue::new();
        submit(&mut s, &mut q, 2, "a");
        assert_eq!(ids(&q.snapshot(&s)), ["a"], "first snapshot rebuilds");
        submit(&mut s, &mut q, 3, "b");
        submit(&mut s, &mut q, 4, "c");
        let placed = s
            .apply(
                5,
                &Command::Place {
                    placements: vec![Placement {
                        job_id: "b".into(),
                        node: "n".into(),
                        gpus: vec![],
                        ..Default::default()
                    }],
                    preemptions: vec![],
                },
            )
            .unwrap();
        q.note(&s, &placed.jobs);
        let cancelled = s
            .apply(
                6,
                &Command::Cancel {
                    job_id: "a".into(),
                    at_ms: 0,
                },
            )
            .unwrap();
        q.note(&s, &cancelled.jobs);
        submit(&mut s, &mut q, 7, "d");
        let snap = q.snapshot(&s);
        assert_eq!(ids(&snap), ["c", "d"]);
        let mut fresh = IncrementalQueue::new();
        assert_eq!(ids(&fresh.snapshot(&s)), ids(&snap));
        // The packed keys stay in step with the jobs they describe.
        let keys = q.keys();
        let seqs: Vec<u64> = keys.keys.iter().map(|k| k.seq).collect();
        assert_eq!(seqs, snap.iter().map(|j| j.seq).collect::<Vec<_>>());
        assert_eq!(QueueKeys::build(&snap).keys.len(), keys.keys.len());
    }
}
