//! `Controller`: the one place that appends to the log and applies to the
//! state machine, plus the leader-only, non-replicated telemetry (GPU use,
//! disk, images, containers) that agents report every few seconds.
//!
//! Why telemetry is not in the log: it changes every report on every node;
//! logging it would make the log grow with cluster size × time. Only facts
//! that change what a job *is* (started, exited, failed) become commands.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use berth_proto::v1::{Event, JobSpec, JobState, NodeReport};
use tokio::sync::{broadcast, watch, Notify};

use crate::scheduler::{self, GpuSlot, NodeView, QueuedJob, Snapshot};
use crate::state::{Applied, Command, JobRecord, NodeRecord, State};
use crate::store::Store;
use crate::{convert, validate, Error, Result};

/// A node that has not reported for this long is DOWN: nothing new lands on it.
pub const NODE_DOWN_AFTER: Duration = Duration::from_secs(15);

/// The latest report of a node, kept in memory only.
#[derive(Debug, Clone)]
pub struct Telemetry {
    pub at: Instant,
    pub report: NodeReport,
}

struct Inner {
    state: State,
    store: Store,
    telemetry: HashMap<String, Telemetry>,
}

pub struct Controller {
    inner: Mutex<Inner>,
    applied: watch::Sender<u64>,
    events: broadcast::Sender<Event>,
    /// Poked whenever something may let a queued job start.
    pub schedule_needed: Notify,
    started_at: Instant,
}

impl Controller {
    /// Opens the data dir and replays the log. A new data dir gets a fresh cluster id.
    pub fn open(data_dir: &std::path::Path) -> Result<Arc<Controller>> {
        let (store, state) = Store::open(data_dir)?;
        let applied = state.applied_index;
        let (applied_tx, _) = watch::channel(applied);
        let (events, _) = broadcast::channel(4096);
        let ctl = Arc::new(Controller {
            inner: Mutex::new(Inner {
                state,
                store,
                telemetry: HashMap::new(),
            }),
            applied: applied_tx,
            events,
            schedule_needed: Notify::new(),
            started_at: Instant::now(),
        });
        if ctl.lock().state.cluster_id.is_empty() {
            let cluster_id = format!("{:016x}", rand::random::<u64>());
            ctl.propose(Command::Init { cluster_id })?;
        }
        Ok(ctl)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `cmd` durably, applies it, and tells waiters. The lock is held
    /// across the fsync so the log order is the apply order.
    pub fn propose(&self, cmd: Command) -> Result<Applied> {
        let mut inner = self.lock();
        let index = inner.state.applied_index + 1;
        inner.store.append(index, &cmd)?;
        let result = inner.state.apply(index, &cmd);
        let Inner { state, store, .. } = &mut *inner;
        if let Err(e) = store.maybe_snapshot(state) {
            tracing::warn!(error = %e, "snapshot failed; the log keeps growing until one succeeds");
        }
        let applied = result.map_err(Error::Rejected)?;
        for rejected in &applied.rejected {
            tracing::warn!(%rejected, "state machine refused a placement");
        }
        let now = convert::now_ms();
        for id in &applied.jobs {
            if let Some(job) = inner.state.jobs.get(id) {
                let _ = self.events.send(Event {
                    index,
                    at_ms: now,
                    kind: Some(berth_proto::v1::event::Kind::Job(convert::job(
                        job,
                        &inner.state,
                    ))),
                });
            }
        }
        if let Some(node) = &applied.node {
            let _ = self.events.send(Event {
                index,
                at_ms: now,
                kind: Some(berth_proto::v1::event::Kind::NodeRegistered(node.clone())),
            });
        }
        drop(inner);
        self.applied.send_replace(index);
        self.schedule_needed.notify_one();
        Ok(applied)
    }

    /// Runs `f` on the current state.
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.lock().state)
    }

    pub fn cluster_id(&self) -> String {
        self.read(|s| s.cluster_id.clone())
    }

    pub fn subscribe_applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    pub fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Finds a job by id, unique id prefix, or name (the newest job of that name).
    pub fn resolve(&self, reference: &str) -> Result<JobRecord> {
        self.read(|s| resolve_in(s, reference).cloned())
    }

    /// Validates, then queues a job. Nothing is written when validation fails.
    pub fn submit(&self, spec: JobSpec, name: String) -> Result<JobRecord> {
        let id = format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
        let name = if name.is_empty() {
            format!("job-{id}")
        } else {
            name
        };
        {
            let inner = self.lock();
            validate::job(&spec, &name)?;
            validate::against_cluster(&spec, &inner.state, &self.images_by_node(&inner))?;
        }
        self.propose(Command::Submit {
            id: id.clone(),
            name,
            spec,
            at_ms: convert::now_ms(),
        })?;
        self.resolve(&id)
    }

    /// Image sets per registered node; `None` for a node that has not reported
    /// since this controller started (we cannot know what it holds yet).
    fn images_by_node(
        &self,
        inner: &Inner,
    ) -> Vec<(String, Option<std::collections::HashSet<String>>)> {
        inner
            .state
            .nodes
            .keys()
            .map(|n| {
                (
                    n.clone(),
                    inner.telemetry.get(n).map(|t| image_set(&t.report)),
                )
            })
            .collect()
    }

    pub fn cancel(&self, reference: &str) -> Result<JobRecord> {
        let job = self.resolve(reference)?;
        if job.state.is_finished() {
            return Err(Error::FailedPrecondition(format!(
                "job {} ({}) has already finished ({})",
                job.name,
                job.id,
                job.state.word()
            )));
        }
        if job.state == JobState::Stopping {
            return Ok(job);
        }
        self.propose(Command::Cancel {
            job_id: job.id.clone(),
            at_ms: convert::now_ms(),
        })?;
        self.resolve(&job.id)
    }

    /// Registers (or re-registers) a node; a no-op when nothing changed.
    pub fn register(&self, node: NodeRecord) -> Result<String> {
        let unchanged = self.read(|s| s.nodes.get(&node.name) == Some(&node));
        if !unchanged {
            tracing::info!(node = %node.name, gpus = node.gpus.len(), backend = %node.gpu_backend, "node registered");
            self.propose(Command::RegisterNode(node))?;
        }
        Ok(self.cluster_id())
    }

    /// Takes an agent's report: keeps its telemetry, and turns container facts
    /// into job transitions (started, exited, failed, stopped).
    pub fn report(&self, report: NodeReport) -> Result<()> {
        let commands = {
            let mut inner = self.lock();
            if !inner.state.nodes.contains_key(&report.node) {
                return Err(Error::FailedPrecondition(format!(
                    "node {} is not registered; register first",
                    report.node
                )));
            }
            let commands = crate::report::transitions(&inner.state, &report, convert::now_ms());
            inner.telemetry.insert(
                report.node.clone(),
                Telemetry {
                    at: Instant::now(),
                    report,
                },
            );
            commands
        };
        for cmd in commands {
            if let Err(e) = self.propose(cmd) {
                tracing::warn!(error = %e, "report transition refused");
            }
        }
        self.schedule_needed.notify_one();
        Ok(())
    }

    pub fn telemetry(&self, node: &str) -> Option<Telemetry> {
        self.lock().telemetry.get(node).cloned()
    }

    /// Whether the node has reported recently.
    pub fn node_ready(&self, node: &str) -> bool {
        self.telemetry(node)
            .is_some_and(|t| t.at.elapsed() < NODE_DOWN_AFTER)
    }

    pub fn uptime(&self) -> Duration {
        self.started_at.elapsed()
    }

    /// One scheduling pass: snapshot, plan, propose. Returns how many placed.
    pub fn schedule_once(&self) -> Result<usize> {
        let snapshot = {
            let inner = self.lock();
            if inner.state.queue.is_empty() {
                return Ok(0);
            }
            scheduler_snapshot(&inner)
        };
        let plan = scheduler::schedule(&snapshot);
        if plan.is_empty() {
            return Ok(0);
        }
        for p in &plan {
            tracing::info!(job = %p.job_id, node = %p.node, gpus = ?p.gpus.iter().map(|g| g.index).collect::<Vec<_>>(), "placing");
        }
        let applied = self.propose(Command::Place { placements: plan })?;
        Ok(applied.jobs.len())
    }
}

fn scheduler_snapshot(inner: &Inner) -> Snapshot {
    let state = &inner.state;
    let nodes = state
        .nodes
        .values()
        .filter_map(|node| {
            let t = inner.telemetry.get(&node.name)?;
            if t.at.elapsed() >= NODE_DOWN_AFTER {
                return None;
            }
            let foreign: std::collections::HashSet<&str> = t
                .report
                .gpus
                .iter()
                .filter(|g| !g.foreign_processes.is_empty())
                .map(|g| g.uuid.as_str())
                .collect();
            let free_gpus = node
                .gpus
                .iter()
                .filter(|g| {
                    state.gpu_holder(&g.uuid).is_none() && !foreign.contains(g.uuid.as_str())
                })
                .map(|g| GpuSlot {
                    index: g.index,
                    uuid: g.uuid.clone(),
                })
                .collect();
            let used_ports = state
                .jobs
                .values()
                .filter(|j| j.state.holds_resources() && j.node.as_deref() == Some(&node.name))
                .flat_map(|j| {
                    j.spec
                        .ports
                        .iter()
                        .map(|p| (p.host_port, p.protocol.clone()))
                })
                .collect();
            Some(NodeView {
                name: node.name.clone(),
                free_gpus,
                images: image_set(&t.report),
                used_ports,
            })
        })
        .collect();
    let queue = state
        .queue
        .iter()
        .filter_map(|id| state.jobs.get(id))
        .map(|j| QueuedJob {
            id: j.id.clone(),
            gpus: j.spec.gpus,
            image: j.spec.image.clone(),
            ports: j
                .spec
                .ports
                .iter()
                .map(|p| (p.host_port, p.protocol.clone()))
                .collect(),
        })
        .collect();
    Snapshot { nodes, queue }
}

/// Every reference an image can be named by on a node: tags and ids.
pub fn image_set(report: &NodeReport) -> std::collections::HashSet<String> {
    report
        .images
        .iter()
        .flat_map(|i| i.tags.iter().cloned().chain(std::iter::once(i.id.clone())))
        .collect()
}

/// Resolution order, as docker does for containers: exact id, then exact name
/// (newest first), then a unique id prefix.
pub fn resolve_in<'a>(state: &'a State, reference: &str) -> Result<&'a JobRecord> {
    if reference.is_empty() {
        return Err(Error::InvalidArgument(
            "a job id or name is required".into(),
        ));
    }
    if let Some(job) = state.jobs.get(reference) {
        return Ok(job);
    }
    if let Some(id) = state.live_job_named(reference) {
        return Ok(&state.jobs[id]);
    }
    if let Some(job) = state
        .jobs
        .values()
        .filter(|j| j.name == reference)
        .max_by_key(|j| j.submitted_at_ms)
    {
        return Ok(job);
    }
    let mut matches = state
        .jobs
        .range(reference.to_string()..)
        .take_while(|(id, _)| id.starts_with(reference));
    match (matches.next(), matches.next()) {
        (Some((_, job)), None) => Ok(job),
        (Some(_), Some(_)) => Err(Error::InvalidArgument(format!(
            "{reference:?} matches several job ids; give more characters"
        ))),
        _ => Err(Error::NotFound(format!(
            "no job with id or name {reference:?}"
        ))),
    }
}
