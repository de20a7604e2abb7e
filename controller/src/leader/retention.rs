//! Retention: finished jobs are forgotten once they ended longer ago than
//! `--job-retention`, so the state, its snapshots and `ps -a` do not grow
//! with all history; the usage ledger's runs older than `--usage-detail`
//! are summed per day, for the same reason.

use super::Leader;
use crate::core::convert;
use crate::state::Command;
use crate::Result;

impl Leader {
    /// On the leader: forgets the jobs that finished more than `retention`
    /// ago, if there are any. Returns how many went.
    pub async fn forget_old_jobs(&self, retention: std::time::Duration) -> Result<usize> {
        let ctl = &self.ctl;
        ctl.ensure_leader()?;
        let before_ms = convert::now_ms() - retention.as_millis() as i64;
        // The state's own rule: a finished task whose group still runs is
        // not counted, so no empty `Forget` is proposed every minute for it.
        let gone = ctl.read(|s| s.forgettable(before_ms).0.len());
        if gone == 0 {
            return Ok(0);
        }
        ctl.propose(Command::Forget { before_ms }).await?;
        ctl.metrics.jobs_forgotten.inc_by(gone as u64);
        tracing::info!(jobs = gone, retention = %humantime::format_duration(retention), "forgot finished jobs");
        Ok(gone)
    }

    /// On the leader: sums the ledger's runs that ended more than `detail`
    /// ago per day. Returns how many runs were folded.
    pub async fn compact_usage(&self, detail: std::time::Duration) -> Result<usize> {
        let ctl = &self.ctl;
        ctl.ensure_leader()?;
        let before_ms = convert::now_ms() - detail.as_millis() as i64;
        let old = ctl.read(|s| {
            s.usage
                .runs
                .iter()
                .filter(|r| r.finished_at_ms < before_ms)
                .count()
        });
        if old == 0 {
            return Ok(0);
        }
        ctl.propose(Command::CompactUsage { before_ms }).await?;
        tracing::info!(runs = old, detail = %humantime::format_duration(detail), "summed old usage by day");
        Ok(old)
    }
}
