//! One scheduling pass: the scheduler's snapshot, the pure `schedule`, and
//! the plan proposed as one `Place` command (which the state machine
//! re-checks on apply).

use super::Leader;
use crate::scheduler;
use crate::state::Command;
use crate::Result;

impl Leader {
    /// Leader duties, one pass: give a new cluster its id, then schedule.
    /// Returns how many jobs were placed.
    pub async fn pass(&self) -> Result<usize> {
        let ctl = &self.ctl;
        if !ctl.is_leader() {
            return Ok(0);
        }
        ctl.ensure_cluster_id().await?;
        let start = std::time::Instant::now();
        let snapshot = {
            let inner = ctl.shared.lock();
            if inner.state.queue.is_empty() {
                return Ok(0);
            }
            // A host lacking the image may be chosen when no holder can
            // take the job now: its agent then pulls it (JOB_STATE_PULLING).
            self.snapshot(&inner, true)
        };
        let plan = scheduler::schedule(&snapshot);
        // Dropped before the plan applies, so the next pass's queue is
        // updated in place rather than copied (see `queue`).
        drop(snapshot);
        ctl.metrics
            .pass_seconds
            .observe(start.elapsed().as_secs_f64());
        if plan.placements.is_empty() && plan.preemptions.is_empty() {
            return Ok(0);
        }
        if plan.placements.len() <= 32 {
            for p in &plan.placements {
                tracing::info!(job = %p.job_id, node = %p.node, gpus = ?p.gpus.iter().map(|g| g.index).collect::<Vec<_>>(), "placing");
            }
        } else {
            tracing::info!(jobs = plan.placements.len(), "placing");
        }
        for (victim, for_job) in &plan.preemptions {
            tracing::info!(%victim, %for_job, "preempting");
        }
        let placed = plan.placements.len();
        let preempted = plan.preemptions.len();
        ctl.propose(Command::Place {
            placements: plan.placements,
            preemptions: plan.preemptions.into_iter().map(|p| p.0).collect(),
        })
        .await?;
        ctl.metrics.placements.inc_by(placed as u64);
        ctl.metrics.preemptions.inc_by(preempted as u64);
        Ok(placed)
    }
}
