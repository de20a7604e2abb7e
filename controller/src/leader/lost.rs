//! Jobs on hosts that stopped reporting, and on hosts whose drain deadline
//! passed. After `--node-lost-after` without a report, each job still
//! holding resources there is lost: it fails, or runs again elsewhere, as
//! its `--on-host-lost` says (`State::lost`); `wait` jobs are left alone
//! and adopted if the host returns. The agent has already stopped the
//! others by then (it fences at half the timeout: docs/operations.md).
//! Silence is counted from when this controller became leader too: a new
//! leader has no reports yet, and must not take every host for lost.

use std::time::Instant;

use super::Leader;
use crate::core::convert;
use crate::state::{Command, OnHostLost};
use crate::Result;

impl Leader {
    /// Declares lost the jobs of hosts silent for `--node-lost-after`;
    /// `leader_since` is when this controller's leadership began. Returns
    /// how many.
    pub async fn fail_lost_jobs(&self, leader_since: Instant) -> Result<usize> {
        let ctl = &self.ctl;
        let after = ctl.node_lost_after;
        if !ctl.is_leader() || leader_since.elapsed() < after {
            return Ok(0);
        }
        let lost: Vec<(String, String)> = {
            let inner = ctl.shared.lock();
            inner
                .state
                .nodes
                .keys()
                .filter(|n| {
                    inner
                        .telemetry
                        .get(*n)
                        .is_none_or(|t| t.at.elapsed() >= after)
                })
                .flat_map(|n| {
                    inner
                        .state
                        .jobs_on(n)
                        .filter(|j| j.state.holds_resources())
                        .filter(|j| {
                            j.spec.on_host_lost.resolve(&j.spec.restart) != OnHostLost::Wait
                        })
                        .map(|j| (j.id.clone(), n.clone()))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        for (job_id, node) in &lost {
            tracing::warn!(job = %job_id, %node, "host stopped reporting: job lost");
            ctl.propose(Command::Lost {
                job_id: job_id.clone(),
                message: format!(
                    "its host {node} stopped reporting for {} s (lost)",
                    after.as_secs()
                ),
                at_ms: convert::now_ms(),
            })
            .await?;
        }
        Ok(lost.len())
    }

    /// Stops what still runs on draining hosts whose deadline passed.
    pub async fn evict_drained(&self) -> Result<usize> {
        let due = self.ctl.read(|s| s.due_evictions(convert::now_ms()));
        let mut by_node: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for (job, node) in due {
            by_node.entry(node).or_default().push(job);
        }
        let mut n = 0;
        for (node, job_ids) in by_node {
            tracing::info!(%node, jobs = job_ids.len(), "drain deadline: stopping what still runs");
            n += job_ids.len();
            self.ctl
                .propose(Command::Evict {
                    job_ids,
                    reason: format!("its host {node} was drained"),
                })
                .await?;
        }
        Ok(n)
    }
}
