//! Jobs on hosts that stopped reporting. After `NODE_DOWN_AFTER` without a
//! report, each job still holding resources there fails with the reason —
//! and, with a restart policy, is placed again elsewhere (`State::finish`).
//! Silence is counted from when this controller became leader too: a new
//! leader has no reports yet, and must not take every host for lost.

use std::time::Instant;

use super::Leader;
use crate::core::{convert, NODE_DOWN_AFTER};
use crate::state::Command;
use crate::Result;

impl Leader {
    /// Fails the jobs of hosts silent for `NODE_DOWN_AFTER`; `leader_since`
    /// is when this controller's leadership began. Returns how many.
    pub async fn fail_lost_jobs(&self, leader_since: Instant) -> Result<usize> {
        let ctl = &self.ctl;
        if !ctl.is_leader() || leader_since.elapsed() < NODE_DOWN_AFTER {
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
                        .is_none_or(|t| t.at.elapsed() >= NODE_DOWN_AFTER)
                })
                .flat_map(|n| {
                    inner
                        .state
                        .jobs_on(n)
                        .filter(|j| j.state.holds_resources())
                        .map(|j| (j.id.clone(), n.clone()))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        for (job_id, node) in &lost {
            tracing::warn!(job = %job_id, %node, "host stopped reporting: job lost");
            ctl.propose(Command::Failed {
                job_id: job_id.clone(),
                message: format!(
                    "its host {node} stopped reporting for {} s (lost)",
                    NODE_DOWN_AFTER.as_secs()
                ),
                at_ms: convert::now_ms(),
            })
            .await?;
        }
        Ok(lost.len())
    }
}
