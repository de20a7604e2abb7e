//! The controller's side of the replicated state machine: `State` plus the
//! in-memory telemetry, behind one lock. The raft thread applies committed
//! commands here; every apply wakes waiters, the scheduler, event watchers
//! and the apply observers (the leader's incremental caches).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use berth_proto::v1::{event, Event};
use tokio::sync::{broadcast, watch, Notify};

use super::convert;
use super::telemetry::Telemetry;
use crate::raft::handle::{ApplyOutput, StateMachine};
use crate::state::{Command, Rejection, State};

/// Something kept in step with the state as commands apply: told under the
/// state lock, so what it derives is never behind the state it is read
/// with. The leader's incremental queue is one; it lives in `leader`, which
/// the core does not know.
pub trait ApplyObserver: Send + Sync {
    /// `changed`: the jobs whose state the command at `index` moved.
    fn applied(&self, state: &State, changed: &[String]);
    /// The state was replaced by a snapshot: rebuild from scratch.
    fn restored(&self);
}

pub struct Inner {
    pub state: State,
    pub telemetry: HashMap<String, Telemetry>,
}

pub struct Shared {
    inner: Mutex<Inner>,
    applied: watch::Sender<u64>,
    events: broadcast::Sender<Event>,
    observers: RwLock<Vec<Arc<dyn ApplyObserver>>>,
    /// Poked whenever something may let a queued job start.
    pub schedule_needed: Notify,
}

impl Shared {
    pub fn new() -> Shared {
        Shared {
            inner: Mutex::new(Inner {
                state: State::default(),
                telemetry: HashMap::new(),
            }),
            applied: watch::channel(0).0,
            events: broadcast::channel(4096).0,
            observers: RwLock::default(),
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

    /// Adds an observer; it first hears of the next command applied (so
    /// it should treat what it has as stale until then, or build lazily).
    pub fn observe(&self, observer: Arc<dyn ApplyObserver>) {
        self.observers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(observer);
    }

    fn each_observer(&self, f: impl Fn(&dyn ApplyObserver)) {
        for o in self
            .observers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            f(o.as_ref());
        }
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
            self.each_observer(|o| o.applied(&inner.state, &applied.jobs));
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
        self.each_observer(|o| o.restored());
        drop(inner);
        self.applied.send_replace(index);
        self.schedule_needed.notify_one();
    }
}
