//! A job's moves after placement: pulling its image, started, finished
//! (exited or failed — and then perhaps restarted, under its policy, or
//! requeued after a preemption), stopped by its user, and in the end
//! forgotten once the cluster's retention has passed.

use super::JobState;

use std::collections::BTreeSet;

use super::{Applied, JobRecord, Rejection, State};

/// Backoff before restart `n` (1-based): 1 s, doubling, at most 60 s.
pub fn restart_backoff_ms(n: u32) -> i64 {
    (1000i64 << n.saturating_sub(1).min(6)).min(60_000)
}

pub(super) enum Finish {
    Exited(i32),
    Failed(String),
}

impl State {
    pub(super) fn pulling(&mut self, id: &str) -> Result<Applied, Rejection> {
        let job = self.job_mut(id)?;
        match job.state {
            JobState::Placed => job.state = JobState::Pulling,
            other => return Err(Rejection::BadTransition(id.into(), other.word(), "pull")),
        }
        self.touch_job_node(id);
        Ok(Applied {
            jobs: vec![id.to_string()],
            ..Applied::default()
        })
    }

    pub(super) fn started(
        &mut self,
        id: &str,
        container_id: &str,
        at_ms: i64,
    ) -> Result<Applied, Rejection> {
        let job = self.job_mut(id)?;
        match job.state {
            JobState::Placed | JobState::Pulling => job.state = JobState::Running,
            // The stop raced the start: keep stopping, but remember the container.
            JobState::Stopping => {}
            other => return Err(Rejection::BadTransition(id.into(), other.word(), "start")),
        }
        job.container_id = container_id.to_string();
        job.started_at_ms = at_ms;
        self.touch_job_node(id);
        Ok(Applied {
            jobs: vec![id.to_string()],
            ..Applied::default()
        })
    }

    pub(super) fn finish(
        &mut self,
        index: u64,
        id: &str,
        how: Finish,
        at_ms: i64,
    ) -> Result<Applied, Rejection> {
        self.finish_as(index, id, how, at_ms, None)
    }

    /// `finish`, with the restart decision taken from `restart` when it is
    /// given (a lost host's `--on-host-lost`) instead of the restart policy.
    pub(super) fn finish_as(
        &mut self,
        index: u64,
        id: &str,
        how: Finish,
        at_ms: i64,
        restart: Option<bool>,
    ) -> Result<Applied, Rejection> {
        let job = self.job_mut(id)?;
        let state = job.state;
        if !state.holds_resources() {
            return Err(Rejection::BadTransition(id.into(), state.word(), "finish"));
        }
        let restart = !job.requeue
            && state != JobState::Stopping
            && restart.unwrap_or_else(|| {
                job.spec.restart.restarts_again(
                    match &how {
                        Finish::Exited(code) => Some(*code),
                        Finish::Failed(_) if job.started_at_ms > 0 => None,
                        // Never ran (e.g. a bad mount): starting it again cannot help.
                        Finish::Failed(_) => Some(0),
                    },
                    job.restarts,
                )
            });
        if restart {
            // Its policy says again: a new attempt, queued with its age,
            // not placed before its backoff is over.
            let code = match &how {
                Finish::Exited(c) => Some(*c),
                Finish::Failed(_) => None,
            };
            self.charge_as(id, at_ms, "restarted", code);
            self.release(id);
            let job = self.jobs.get_mut(id).expect("checked");
            let why = match &how {
                Finish::Exited(code) => format!("exited with code {code}"),
                Finish::Failed(m) => m.clone(),
            };
            job.restarts += 1;
            job.not_before_ms = at_ms + restart_backoff_ms(job.restarts);
            job.state = JobState::Queued;
            job.unplace();
            job.container_id.clear();
            job.exit_code = None;
            job.started_at_ms = 0;
            job.message = format!(
                "{why}; restart {} ({}), after {} ms",
                job.restarts,
                job.spec.restart.as_spec(),
                restart_backoff_ms(job.restarts)
            );
            self.live_names.insert(job.name.clone(), id.to_string());
            self.queue.push_back(id.to_string());
            return Ok(Applied {
                jobs: vec![id.to_string()],
                ..Applied::default()
            });
        }
        let job = self.jobs.get_mut(id).expect("checked");
        if job.requeue {
            // Preempted: back in the queue with its age, holding nothing.
            self.charge_as(id, at_ms, "preempted", None);
            self.release(id);
            let job = self.jobs.get_mut(id).expect("checked");
            job.state = JobState::Queued;
            job.requeue = false;
            job.preemptions += 1;
            job.unplace();
            job.container_id.clear();
            job.exit_code = None;
            job.started_at_ms = 0;
            job.message = match std::mem::take(&mut job.requeue_reason) {
                r if r.is_empty() => format!("preempted {} time(s); requeued", job.preemptions),
                r => format!("{r}; requeued"),
            };
            self.live_names.insert(job.name.clone(), id.to_string());
            self.queue.push_back(id.to_string());
            return Ok(Applied {
                jobs: vec![id.to_string()],
                ..Applied::default()
            });
        }
        let failed = match how {
            Finish::Exited(code) => {
                job.exit_code = Some(code);
                job.state = if state == JobState::Stopping {
                    JobState::Cancelled
                } else {
                    JobState::Exited
                };
                code != 0
            }
            Finish::Failed(message) => {
                job.message = message;
                job.state = if state == JobState::Stopping {
                    JobState::Cancelled
                } else {
                    JobState::Failed
                };
                true
            }
        };
        let stopped = state == JobState::Stopping;
        job.finished_at_ms = at_ms;
        let group = job.group.clone();
        let (end, code) = (job.state, job.exit_code);
        self.charge(id, at_ms, end, code);
        self.release(id);
        let mut jobs = vec![id.to_string()];
        if failed || stopped {
            jobs.extend(self.tear_down_gang(index, &group, id, at_ms));
        }
        Ok(Applied {
            jobs,
            ..Applied::default()
        })
    }

    pub(super) fn cancel(
        &mut self,
        index: u64,
        id: &str,
        at_ms: i64,
    ) -> Result<Applied, Rejection> {
        let job = self.job_mut(id)?;
        match job.state {
            JobState::Queued => {
                job.state = JobState::Cancelled;
                job.finished_at_ms = at_ms;
                self.queue.retain(|q| q != id);
                self.release(id);
            }
            JobState::Placed | JobState::Pulling | JobState::Running => {
                job.state = JobState::Stopping;
                job.stop_index = index;
                if let Some(node) = job.node.clone() {
                    self.touch(&node);
                }
            }
            // A user's stop wins over a preemption's requeue.
            JobState::Stopping if job.requeue => job.requeue = false,
            other => return Err(Rejection::BadTransition(id.into(), other.word(), "stop")),
        }
        Ok(Applied {
            jobs: vec![id.to_string()],
            ..Applied::default()
        })
    }

    /// Drops the jobs that finished before `before_ms` (see `forgettable`).
    pub(super) fn forget(&mut self, before_ms: i64) -> Applied {
        let (gone, groups) = self.forgettable(before_ms);
        for id in &gone {
            self.jobs.remove(id);
        }
        for g in &groups {
            self.groups.remove(g);
        }
        self.requests
            .retain(|_, id| !gone.contains(id) && !groups.contains(id));
        Applied::default()
    }

    /// The jobs, and the groups, that finished before `before_ms`: a gang's
    /// or an array's tasks only together, once the last of them is that old.
    pub fn forgettable(&self, before_ms: i64) -> (BTreeSet<String>, BTreeSet<String>) {
        let old = |j: &JobRecord| {
            let at = if j.finished_at_ms > 0 {
                j.finished_at_ms
            } else {
                j.submitted_at_ms
            };
            j.state.is_finished() && at < before_ms
        };
        let groups: BTreeSet<String> = self
            .groups
            .iter()
            .filter(|(_, g)| g.tasks.iter().all(|t| self.jobs.get(t).is_none_or(old)))
            .map(|(id, _)| id.clone())
            .collect();
        let gone: BTreeSet<String> = self
            .jobs
            .values()
            .filter(|j| old(j) && (j.group.is_empty() || groups.contains(&j.group)))
            .map(|j| j.id.clone())
            .collect();
        (gone, groups)
    }
}
