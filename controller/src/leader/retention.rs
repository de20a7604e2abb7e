//! Retention: finished jobs are forgotten once they ended longer ago than
//! `--job-retention`, so the state, its snapshots and `ps -a` do not grow
//! with all history.

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
}
