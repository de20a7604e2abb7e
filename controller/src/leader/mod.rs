//! What only the leader does: schedule queued jobs (`pass`, from the
//! scheduler's `snapshot` of the state with the `queue` kept in step as
//! commands apply), fail or restart the jobs of hosts that went silent
//! (`lost`) and stop what outlived a drain, collect images on full hosts (`gc`), forget finished jobs
//! past the retention (`retention`), and answer the questions that need the
//! scheduler's view (`explain`, dry runs).
//!
//! The leader's caches (the queue as the scheduler sees it, each node's
//! scheduling view) are built at its first pass and then kept in step by an
//! apply observer; a restored snapshot makes them start over. `leader` uses `core`, `state`
//! and `scheduler`; `api` uses `leader`, never the reverse.

mod explain;
mod gc;
mod lost;
mod pass;
pub mod queue;
mod retention;
mod snapshot;

pub use gc::{needed_images, ImageGc};
pub use snapshot::image_set;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustc_hash::FxHashMap;

use crate::core::machine::ApplyObserver;
use crate::core::Controller;
use crate::state::State;
use queue::IncrementalQueue;
use snapshot::CachedNode;

/// How long finished jobs are kept by default (`--job-retention`).
pub const DEFAULT_JOB_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The leader's settings.
#[derive(Debug, Clone, Default)]
pub struct LeaderConfig {
    /// Automatic image GC on hosts whose disk fills up.
    pub image_gc: ImageGc,
    /// Finished jobs are forgotten this long after they ended; `None`
    /// keeps them forever.
    pub job_retention: Option<Duration>,
    /// Runs in the usage ledger are kept one by one this long, then summed
    /// per day (`--usage-detail`); `None` keeps every run.
    pub usage_detail: Option<Duration>,
}

/// `--usage-detail` by default: a quarter of per-run history.
pub const DEFAULT_USAGE_DETAIL: Duration = Duration::from_secs(90 * 24 * 3600);

/// What the leader derives from the state and keeps between passes. No
/// `Default`: the queue must start stale (`IncrementalQueue::new`), or it
/// would never be built and miss every job queued before the leader.
struct Caches {
    /// The queue as the scheduler sees it, kept up to date as commands apply.
    queue: IncrementalQueue,
    /// Each ready node's scheduling view, kept while neither its jobs
    /// (`State::node_stamp`) nor its report (`Telemetry::stamp`) changed.
    node_views: FxHashMap<String, CachedNode>,
}

/// The caches, told of every applied command under the state lock.
struct Observer(Arc<Mutex<Caches>>);

impl ApplyObserver for Observer {
    fn applied(&self, state: &State, changed: &[String]) {
        lock(&self.0).queue.note(state, changed);
    }

    fn restored(&self) {
        let mut caches = lock(&self.0);
        caches.queue.reset();
        caches.node_views.clear();
    }
}

fn lock(caches: &Mutex<Caches>) -> MutexGuard<'_, Caches> {
    caches.lock().unwrap_or_else(|p| p.into_inner())
}

pub struct Leader {
    pub ctl: Arc<Controller>,
    pub cfg: LeaderConfig,
    /// Locked only while the state is (state first, then this), so it
    /// never disagrees with the state it is read with.
    caches: Arc<Mutex<Caches>>,
}

impl Leader {
    pub fn new(ctl: Arc<Controller>, cfg: LeaderConfig) -> Arc<Leader> {
        let caches = Arc::new(Mutex::new(Caches {
            queue: IncrementalQueue::new(),
            node_views: FxHashMap::default(),
        }));
        ctl.shared.observe(Arc::new(Observer(caches.clone())));
        Arc::new(Leader { ctl, cfg, caches })
    }

    /// Starts the leader's loops; they act only while this controller
    /// leads. Abort the handles to stop them.
    pub fn spawn(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        vec![
            tokio::spawn(lead_loop(self.clone())),
            tokio::spawn(gc_loop(self.clone())),
            tokio::spawn(forget_loop(self.clone())),
        ]
    }
}

/// On the leader: places queued jobs whenever something changed, and at least
/// every second (a node coming back or a foreign process leaving changes
/// nothing in the log).
async fn lead_loop(leader: Arc<Leader>) {
    let ctl = leader.ctl.clone();
    let mut leader_since: Option<std::time::Instant> = None;
    let mut lost_checked = tokio::time::Instant::now();
    loop {
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            ctl.shared.schedule_needed.notified(),
        )
        .await;
        let started = tokio::time::Instant::now();
        if let Err(e) = leader.pass().await {
            tracing::warn!(error = %e, "leader pass failed");
        }
        leader_since = match (ctl.is_leader(), leader_since) {
            (true, None) => Some(std::time::Instant::now()),
            (true, since) => since,
            (false, _) => None,
        };
        if let Some(since) = leader_since.filter(|_| lost_checked.elapsed() >= LOST_CHECK_EVERY) {
            lost_checked = tokio::time::Instant::now();
            if let Err(e) = leader.fail_lost_jobs(since).await {
                tracing::warn!(error = %e, "lost-host check failed");
            }
            if let Err(e) = leader.evict_drained().await {
                tracing::warn!(error = %e, "drain check failed");
            }
        }
        // Under a burst of submits, one pass every few milliseconds places
        // the whole batch; a pass per applied command would spend the CPU
        // rebuilding snapshots instead of committing.
        tokio::time::sleep_until(started + MIN_PASS_INTERVAL).await;
    }
}

/// On the leader: image GC on hosts whose disk passed the high-water mark.
async fn gc_loop(leader: Arc<Leader>) {
    // Not at once: a controller that just started has no reports yet.
    let every = leader.cfg.image_gc.every;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tick.tick().await;
        leader.auto_gc_once(leader.cfg.image_gc).await;
    }
}

/// On the leader: forgets finished jobs past the retention, looking every
/// minute (more often for a short retention).
async fn forget_loop(leader: Arc<Leader>) {
    let (jobs, usage) = (leader.cfg.job_retention, leader.cfg.usage_detail);
    let Some(shortest) = jobs.into_iter().chain(usage).min() else {
        return;
    };
    let every = (shortest / 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tick.tick().await;
        if !leader.ctl.is_leader() {
            continue;
        }
        if let Some(retention) = jobs {
            if let Err(e) = leader.forget_old_jobs(retention).await {
                tracing::warn!(error = %e, "forgetting finished jobs failed");
            }
        }
        if let Some(detail) = usage {
            if let Err(e) = leader.compact_usage(detail).await {
                tracing::warn!(error = %e, "summing old usage by day failed");
            }
        }
    }
}

/// How often the leader looks for hosts that stopped reporting.
const LOST_CHECK_EVERY: Duration = Duration::from_secs(1);

/// The shortest time between two scheduling passes.
const MIN_PASS_INTERVAL: Duration = Duration::from_millis(20);
