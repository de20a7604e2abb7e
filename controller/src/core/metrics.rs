//! The controller's Prometheus metrics: counters and histograms the code
//! updates as things happen (`Metrics`, one per controller), and the
//! series read off the state at scrape time (`Cluster`: raft, jobs, the
//! queue, nodes, GPUs with who holds them).
//!
//! Why read at scrape time rather than keep gauges up to date: the state is
//! already in memory and one scrape every 15 s walks it once, where
//! updating gauges would cost every apply on the hot path.

use std::sync::{Arc, Weak};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use super::Controller;

use super::metrics_state::gauge;
pub use super::metrics_state::Labels;

/// What the controller counts as it goes.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Proposals by outcome (applied, rejected, not_leader, unknown).
    pub proposals: Family<Labels, Counter>,
    /// The family's four counters, looked up once: a proposal bumps one
    /// without allocating a label set or taking the family's lock.
    by_outcome: [(&'static str, Counter); 4],
    /// From proposing to applied here, for every proposal that applied.
    pub proposal_seconds: Histogram,
    pub leader_changes: Counter,
    /// One scheduling pass: snapshot and plan (not the proposal).
    pub pass_seconds: Histogram,
    pub placements: Counter,
    pub preemptions: Counter,
    /// Images the leader's GC asked agents to remove.
    pub image_gc_removals: Counter,
    /// Finished jobs forgotten after `--job-retention`.
    pub jobs_forgotten: Counter,
}

/// What a proposal can come to.
const OUTCOMES: [&str; 4] = ["applied", "rejected", "not_leader", "unknown"];

impl Default for Metrics {
    fn default() -> Metrics {
        let proposals: Family<Labels, Counter> = Family::default();
        let by_outcome = OUTCOMES.map(|o| {
            (
                o,
                proposals.get_or_create_owned(&vec![("outcome", o.to_string())]),
            )
        });
        Metrics {
            proposals,
            by_outcome,
            // 0.25 ms .. ~8 s: a local commit to a slow quorum.
            proposal_seconds: Histogram::new(exponential_buckets(0.000_25, 2.0, 16)),
            leader_changes: Counter::default(),
            // 50 µs .. ~1.6 s: a small queue to a hundred thousand jobs.
            pass_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            placements: Counter::default(),
            preemptions: Counter::default(),
            image_gc_removals: Counter::default(),
            jobs_forgotten: Counter::default(),
        }
    }
}

impl Metrics {
    /// Every outcome starts at 0 (`Default` makes them), so the first
    /// failure shows as a change.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    pub fn proposal(&self, outcome: &'static str, took: Option<Duration>) {
        if let Some((_, c)) = self.by_outcome.iter().find(|(o, _)| *o == outcome) {
            c.inc();
        }
        if let Some(t) = took {
            self.proposal_seconds.observe(t.as_secs_f64());
        }
    }
}

/// The registry a controller's `/metrics` serves. Spawns the task that
/// counts leader changes (needs a tokio runtime).
pub fn registry(ctl: &Arc<Controller>) -> Registry {
    let m = &ctl.metrics;
    let mut r = Registry::default();
    r.register(
        "berth_raft_proposals",
        "Commands proposed through raft by this controller, by outcome",
        m.proposals.clone(),
    );
    r.register_with_unit(
        "berth_raft_proposal_duration",
        "Time from proposing a command to its being applied here",
        Unit::Seconds,
        m.proposal_seconds.clone(),
    );
    r.register(
        "berth_raft_leader_changes",
        "Times this controller saw the leader change",
        m.leader_changes.clone(),
    );
    r.register_with_unit(
        "berth_scheduler_pass_duration",
        "One scheduling pass on the leader: snapshot and plan",
        Unit::Seconds,
        m.pass_seconds.clone(),
    );
    r.register(
        "berth_scheduler_placements",
        "Jobs the leader's scheduler placed",
        m.placements.clone(),
    );
    r.register(
        "berth_scheduler_preemptions",
        "Running jobs the scheduler preempted for higher-priority ones",
        m.preemptions.clone(),
    );
    r.register(
        "berth_image_gc_removals",
        "Unneeded images the leader's GC had agents remove",
        m.image_gc_removals.clone(),
    );
    r.register(
        "berth_jobs_forgotten",
        "Finished jobs dropped from the state after --job-retention",
        m.jobs_forgotten.clone(),
    );
    r.register_collector(Box::new(Cluster(Arc::downgrade(ctl))));
    let mut status = ctl.raft.status.clone();
    let changes = m.leader_changes.clone();
    tokio::spawn(async move {
        let mut leader = status.borrow().leader;
        while status.changed().await.is_ok() {
            let now = status.borrow().leader;
            if now != leader {
                leader = now;
                changes.inc();
            }
        }
    });
    r
}

/// The series read off the state when scraped. Weak: the controller owns
/// the registry's counters, not the other way round.
#[derive(Debug)]
struct Cluster(Weak<Controller>);

impl Collector for Cluster {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let Some(ctl) = self.0.upgrade() else {
            return Ok(());
        };
        raft(&ctl, &mut enc)?;
        super::metrics_state::encode(&ctl, &mut enc)
    }
}

fn raft(ctl: &Controller, enc: &mut DescriptorEncoder) -> std::fmt::Result {
    let st = ctl.raft.status();
    let one = |v: u64| vec![(Labels::new(), v as f64)];
    gauge(
        enc,
        "berth_raft_term",
        "The current raft term",
        None,
        one(st.term),
    )?;
    gauge(
        enc,
        "berth_raft_leader",
        "The leader's controller id (0: none known)",
        None,
        one(st.leader),
    )?;
    gauge(
        enc,
        "berth_raft_is_leader",
        "1 on the leader, 0 elsewhere",
        None,
        one(u64::from(st.leader == st.id && st.id != 0)),
    )?;
    gauge(
        enc,
        "berth_raft_commit_index",
        "The highest log index known committed",
        None,
        one(st.commit),
    )?;
    gauge(
        enc,
        "berth_raft_applied_index",
        "The highest log index applied to this controller's state",
        None,
        one(st.applied),
    )?;
    gauge(
        enc,
        "berth_raft_apply_lag",
        "Committed entries not yet applied here",
        None,
        one(st.commit.saturating_sub(st.applied)),
    )?;
    gauge(
        enc,
        "berth_raft_log_entries",
        "Entries in the log since the last compaction",
        None,
        one(st.commit.saturating_sub(st.first_index.saturating_sub(1))),
    )?;
    // Followers' progress, on the leader: how far behind each one is.
    let behind: Vec<_> = st
        .matched
        .iter()
        .filter(|(id, _)| **id != st.id)
        .map(|(id, m)| {
            (
                vec![("peer", id.to_string())],
                st.commit.saturating_sub(*m) as f64,
            )
        })
        .collect();
    gauge(
        enc,
        "berth_raft_follower_lag",
        "On the leader: committed entries each follower has not yet stored",
        None,
        behind,
    )
}
