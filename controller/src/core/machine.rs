//! The controller's side of the replicated state machine: `State` plus the
//! in-memory telemetry, behind one lock. The raft thread applies committed
//! commands here; every apply wakes waiters, the scheduler, event watchers
//! and the apply observers (the leader's incremental caches).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use berth_proto::v1::{event, Event};
use tokio::sync::{broadcast, watch, Notify};

use super::convert;
use super::history::{History, HISTORY_EVENTS};
use super::telemetry::Telemetry;
use crate::raft::handle::{ApplyOutput, Fatal, StateMachine};
use crate::state::format::{self, Decode};
use crate::state::{Command, JobState, Rejection, State};

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
    /// The recent events, for watches that resume from a revision.
    pub history: History,
}

pub struct Shared {
    inner: Mutex<Inner>,
    applied: watch::Sender<u64>,
    /// Shared, not copied: one allocation per event for the history and
    /// every watcher, whatever their number.
    events: broadcast::Sender<Arc<Event>>,
    observers: RwLock<Vec<Arc<dyn ApplyObserver>>>,
    /// Poked whenever something may let a queued job start.
    pub schedule_needed: Notify,
}

impl Shared {
    pub fn new() -> Shared {
        Shared::with_history(HISTORY_EVENTS)
    }

    /// A state machine keeping the last `events` events for watches.
    pub fn with_history(events: usize) -> Shared {
        Shared {
            inner: Mutex::new(Inner {
                state: State::default(),
                telemetry: HashMap::new(),
                history: History::new(events),
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

    pub fn subscribe_events(&self) -> broadcast::Receiver<Arc<Event>> {
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
    fn apply(&self, index: u64, data: &[u8]) -> Result<ApplyOutput, Fatal> {
        let (version, cmd): (u8, Command) = match format::decode_entry(index, data) {
            Ok(c) => c,
            Err(e @ Decode::TooNew { .. }) => return Err(Fatal(e.to_string())),
            Err(Decode::Malformed(e)) => {
                // Unreadable in a version this controller knows: skipped
                // alike on every replica (as version 1 did).
                tracing::error!(index, error = %e, "undecodable command in the log");
                return Ok(Err(Rejection::Malformed(e)));
            }
        };
        let mut inner = self.lock();
        let result = inner.state.apply_entry(index, version, &cmd);
        if let Ok(applied) = &result {
            self.each_observer(|o| o.applied(&inner.state, &applied.jobs));
            for rejected in &applied.rejected {
                tracing::warn!(%rejected, "state machine refused a placement");
            }
            let now = convert::now_ms();
            let mut events = Vec::with_capacity(applied.jobs.len() + 1);
            for id in &applied.jobs {
                if let Some(job) = inner.state.jobs.get(id) {
                    // A job that is queued right after a command was just
                    // submitted, so it is last: no need to scan the queue.
                    let position = if job.state == JobState::Queued {
                        inner.state.queue.len() as u32
                    } else {
                        0
                    };
                    events.push(Event {
                        index,
                        at_ms: now,
                        kind: Some(event::Kind::Job(convert::job_at(job, position))),
                    });
                }
            }
            if let Some(node) = &applied.node {
                events.push(Event {
                    index,
                    at_ms: now,
                    kind: Some(event::Kind::NodeRegistered(node.clone())),
                });
            }
            // Kept and sent under the state lock: a watch that reads the
            // history and subscribes under it sees every event once.
            for event in events {
                let event = Arc::new(event);
                inner.history.push(event.clone());
                let _ = self.events.send(event);
            }
        }
        drop(inner);
        self.applied.send_replace(index);
        self.schedule_needed.notify_one();
        Ok(result)
    }

    fn snapshot(&self) -> Vec<u8> {
        format::encode_state(&self.lock().state)
    }

    fn restore(&self, index: u64, data: &[u8]) -> Result<(), Fatal> {
        // Never run on a state that may be wrong: any failure stops.
        let state = format::decode_state(index, data).map_err(|e| match e {
            Decode::TooNew { .. } => Fatal(e.to_string()),
            Decode::Malformed(why) => Fatal(format!(
                "the snapshot at index {index} does not decode: {why}"
            )),
        })?;
        let mut inner = self.lock();
        inner.state = state;
        inner.history.reset(index);
        self.each_observer(|o| o.restored());
        drop(inner);
        self.applied.send_replace(index);
        self.schedule_needed.notify_one();
        Ok(())
    }
}
