//! The order jobs are considered in: priority first, then fair share between
//! users, then age (the rule is stated in the module doc of `scheduler`).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::QueuedJob;

/// What ranking reads of one queued job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueKey {
    pub seq: u64,
    pub memory: u64,
    pub priority: i32,
    pub gpus: u32,
    /// Index into `QueueKeys::users`.
    pub user: u32,
}

/// The ranking's view of the queue, packed: `keys[i]` describes queue
/// position `i`. A pass reads every queued job's priority and user; read
/// through each job's own allocation that was a cache miss per job, most
/// of a pass at 100,000 queued jobs, so the controller keeps this dense
/// array beside the queue as it changes (`sched_queue`).
#[derive(Debug, Clone, Default)]
pub struct QueueKeys {
    pub keys: Vec<QueueKey>,
    /// User names, interned (never shrinks: users are few).
    pub users: Vec<String>,
    index: FxHashMap<String, u32>,
}

impl QueueKeys {
    pub fn build(queue: &[Arc<QueuedJob>]) -> QueueKeys {
        let mut k = QueueKeys::default();
        for j in queue {
            k.push(j);
        }
        k
    }

    /// Appends the key of the job now at the end of the queue.
    pub fn push(&mut self, j: &QueuedJob) {
        let user = match self.index.get(j.user.as_str()) {
            Some(&u) => u,
            None => {
                let u = self.users.len() as u32;
                self.users.push(j.user.clone());
                self.index.insert(j.user.clone(), u);
                u
            }
        };
        self.keys.push(QueueKey {
            seq: j.seq,
            memory: j.memory,
            priority: j.priority,
            gpus: j.gpus,
            user,
        });
    }
}

/// What a pass needs to know about the whole queue to stop early.
#[derive(Debug, Clone, Copy)]
pub struct QueueFacts {
    /// Some job needs no GPU at all (it may fit on a full cluster).
    pub gpu_free_jobs: bool,
    /// The smallest shared slice asked for (`u64::MAX` if none).
    pub min_slice: u64,
}

/// Yields queue positions in rank order. Usage is read at every step, so
/// what the pass has placed already counts.
pub struct FairOrder<'a> {
    /// Priority (highest first) → that level's users.
    levels: BTreeMap<Reverse<i32>, Level>,
    /// The user whose job was yielded last, to put back with fresh usage.
    pending: Option<(Reverse<i32>, usize)>,
    queue: &'a [Arc<QueuedJob>],
}

struct Level {
    users: Vec<(String, VecDeque<usize>)>,
    /// (usage when pushed, seq of the user's oldest job, user) — lowest first.
    heap: BinaryHeap<Reverse<(u64, u64, usize)>>,
}

impl<'a> FairOrder<'a> {
    /// Groups the queue by priority and user in one pass over it (each job
    /// is read once: at 100,000 queued jobs this pass is most of the cost of
    /// a scheduling pass), noting on the way what `QueueFacts` needs.
    /// `keys`: the queue's packed keys when the caller keeps them (built
    /// here otherwise).
    pub fn new(
        queue: &'a [Arc<QueuedJob>],
        keys: Option<&QueueKeys>,
    ) -> (FairOrder<'a>, QueueFacts) {
        let built;
        let keys = match keys {
            Some(k) if k.keys.len() == queue.len() => k,
            _ => {
                built = QueueKeys::build(queue);
                &built
            }
        };
        // Per level, per user index: (jobs, last seq, in order so far).
        type Users = Vec<(Vec<usize>, u64, bool)>;
        let mut by_level: BTreeMap<Reverse<i32>, Users> = BTreeMap::new();
        let mut facts = QueueFacts {
            gpu_free_jobs: false,
            min_slice: u64::MAX,
        };
        let mut last: Option<(i32, &mut Users)> = None;
        for (i, j) in keys.keys.iter().enumerate() {
            if j.gpus == 0 {
                if j.memory == 0 {
                    facts.gpu_free_jobs = true;
                } else {
                    facts.min_slice = facts.min_slice.min(j.memory);
                }
            }
            // Most jobs share a priority: skip the level lookup for them.
            let users = match last.take() {
                Some((p, users)) if p == j.priority => users,
                _ => by_level.entry(Reverse(j.priority)).or_default(),
            };
            let u = j.user as usize;
            if users.len() <= u {
                users.resize_with(keys.users.len().max(u + 1), || (Vec::new(), 0, true));
            }
            let entry = &mut users[u];
            entry.2 &= j.seq >= entry.1;
            entry.1 = j.seq;
            entry.0.push(i);
            last = Some((j.priority, users));
        }
        let levels = by_level
            .into_iter()
            .map(|(prio, users)| {
                let mut users: Vec<(String, VecDeque<usize>)> = users
                    .into_iter()
                    .enumerate()
                    .filter(|(_, (jobs, _, _))| !jobs.is_empty())
                    .map(|(u, (mut jobs, _, in_order))| {
                        if !in_order {
                            jobs.sort_by_key(|&i| (keys.keys[i].seq, i));
                        }
                        (keys.users[u].clone(), jobs.into())
                    })
                    .collect();
                users.sort_by(|a, b| a.0.cmp(&b.0));
                // Keyed (0, 0): stale on purpose, so the first `next`
                // re-keys every user with real usage before choosing.
                let heap = (0..users.len()).map(|u| Reverse((0, 0, u))).collect();
                (prio, Level { users, heap })
            })
            .collect();
        let order = FairOrder {
            levels,
            pending: None,
            queue,
        };
        (order, facts)
    }

    /// The next job to consider, or `None` when every job was yielded.
    pub fn next(&mut self, usage: &HashMap<String, u64>) -> Option<usize> {
        if let Some((prio, u)) = self.pending.take() {
            let level = self.levels.get_mut(&prio).expect("pending level exists");
            if let Some(&head) = level.users[u].1.front() {
                let used = usage.get(&level.users[u].0).copied().unwrap_or(0);
                level.heap.push(Reverse((used, self.queue[head].seq, u)));
            }
        }
        loop {
            let (&prio, level) = self.levels.iter_mut().next()?;
            let Some(Reverse((used_then, seq_then, u))) = level.heap.pop() else {
                self.levels.remove(&prio);
                continue;
            };
            let (user, jobs) = &mut level.users[u];
            let Some(&head) = jobs.front() else {
                continue;
            };
            // Entries are keyed with the usage and head seen when pushed;
            // usage only grows within a pass, so a stale entry pops early:
            // re-key it and choose again.
            let used = usage.get(user.as_str()).copied().unwrap_or(0);
            let seq = self.queue[head].seq;
            if used != used_then || seq != seq_then {
                level.heap.push(Reverse((used, seq, u)));
                continue;
            }
            jobs.pop_front();
            self.pending = Some((prio, u));
            return Some(head);
        }
    }
}
