//! The controller's side of the replicated state machine: `State` plus the
//! in-memory telemetry, behind one lock. The raft thread applies committed
//! commands here; every apply wakes waiters, the scheduler and event watchers.
//!
//! Why telemetry is not in the log: it changes on every report of every
//! node; logging it would grow the log with cluster size × time. Only facts
//! that change what a job *is* (started, exited, failed) become commands.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use berth_proto::v1::{event, Event, NodeReport};
use tokio::sync::{broadcast, watch, Notify};

use crate::convert;
use crate::raft::handle::{ApplyOutput, StateMachine};
use crate::sched_queue::SchedQueue;
use crate::state::{Command, Rejection, State};

/// The latest report of a node, kept in memory on the leader only.
#[derive(Debug, Clone)]
pub struct Telemetry {
    pub at: Instant,
    pub report: NodeReport,
    /// Changes when what the scheduler reads of the report changes (GPU
    /// memory and foreign processes, images, disk).
    pub stamp: u64,
}

/// A node's scheduling view and its users' GPU-equivalents, with the stamps
/// it was built at.
pub struct CachedNode {
    pub stamps: (u64, u64),
    pub view: Arc<crate::scheduler::NodeView>,
    pub usage: Vec<(String, u64)>,
}

pub struct Inner {
    pub state: State,
    pub telemetry: HashMap<String, Telemetry>,
    /// Each ready node's scheduling view, kept while neither its jobs
    /// (`State::node_stamp`) nor its report (`Telemetry::stamp`) changed.
    pub node_views: rustc_hash::FxHashMap<String, CachedNode>,
    /// The queue as the scheduler sees it, kept up to date as commands apply.
    pub sched: SchedQueue,
}

pub struct Shared {
    inner: Mutex<Inner>,
    applied: watch::Sender<u64>,
    events: broadcast::Sender<Event>,
    /// Poked whenever something may let a queued job start.
    pub schedule_needed: Notify,
}

impl Shared {
    pub fn new() -> Shared {
        Shared {
            inner: Mutex::new(Inner {
                state: State::default(),
                telemetry: HashMap::new(),
                sched: SchedQueue::new(),
                node_views: Default::default(),
            }),
            applied: watch::channel(0).0,
            events: broadcast::channel(4096).0,
            schedule_needed: Notify::new(),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn subscribe_applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    pub fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}

impl Default for Shared {
    fn default() -> Self {
        Shared::new()
    }
}

impl StateMachine for Shared {
    fn apply(&self, index: u64, data: &[u8]) -> ApplyOutput {
        let cmd: Command = match serde_json::from_slice(data) {
            Ok(c) => c,
            Err(e) => {
                // Unknown to this version: skip deterministically on every replica.
                tracing::error!(index, error = %e, "undecodable command in the log");
                return Err(Rejection::Malformed(e.to_string()));
            }
        };
        let mut inner = self.lock();
        let result = inner.state.apply(index, &cmd);
        if let Ok(applied) = &result {
            let Inner { state, sched, .. } = &mut *inner;
            sched.note(state, &applied.jobs);
            for rejected in &applied.rejected {
                tracing::warn!(%rejected, "state machine refused a placement");
            }
            let now = convert::now_ms();
            for id in &applied.jobs {
                if let Some(job) = inner.state.jobs.get(id) {
                    // A job that is queued right after a command was just
                    // submitted, so it is last: no need to scan the queue.
                    let position = if job.state == berth_proto::v1::JobState::Queued {
                        inner.state.queue.len() as u32
                    } else {
                        0
                    };
                    let _ = self.events.send(Event {
                        index,
                        at_ms: now,
                        kind: Some(event::Kind::Job(convert::job_at(job, position))),
                    });
                }
            }
            if let Some(node) = &applied.node {
                let _ = self.events.send(Event {
                    index,
                    at_ms: now,
                    kind: Some(event::Kind::NodeRegistered(node.clone())),
                });
            }
        }
        drop(inner);
        self.applied.send_replace(index);
        self.schedule_needed.notify_one();
        result
    }

    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&self.lock().state).expect("state serialises")
    }

    fn restore(&self, index: u64, data: &[u8]) {
        let mut state: State = match serde_json::from_slice(data) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(index, error = %e, "undecodable snapshot; refusing to run on a wrong state");
                std::process::exit(70);
            }
        };
        state.reindex();
        let mut inner = self.lock();
        inner.state = state;
        inner.sched.reset();
        inner.node_views.clear();
        drop(inner);
        self.applied.send_replace(index);
        self.schedule_needed.notify_one();
    }
}
