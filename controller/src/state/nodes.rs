//! An admin's hand on hosts: cordon (no new placements), drain (cordon,
//! then evict what still runs at a deadline), remove (forget a dead host),
//! and what losing a host means for its jobs (`lost`, under each job's
//! `--on-host-lost`).

use serde::{Deserialize, Serialize};

use super::lifecycle::Finish;
use super::{Applied, JobState, OnHostLost, Rejection, RestartPolicy, State};

/// A cordoned host: nothing new is placed on it. With `drain_deadline_ms`,
/// what still runs there at that time is evicted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cordon {
    pub at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_deadline_ms: Option<i64>,
}

impl State {
    /// Whether new placements on `node` are refused.
    pub fn is_cordoned(&self, node: &str) -> bool {
        self.cordons.contains_key(node)
    }

    pub(super) fn cordon(
        &mut self,
        node: &str,
        drain_deadline_ms: Option<i64>,
        at_ms: i64,
    ) -> Result<Applied, Rejection> {
        if !self.nodes.contains_key(node) {
            return Err(Rejection::NoSuchNode(node.to_string()));
        }
        // A second drain keeps the earlier deadline unless it is sooner
        // (`--force` after a long drain): a drain is never extended by
        // accident.
        let drain = match (
            self.cordons.get(node).and_then(|c| c.drain_deadline_ms),
            drain_deadline_ms,
        ) {
            (Some(old), Some(new)) => Some(old.min(new)),
            (old, new) => new.or(old),
        };
        self.cordons.insert(
            node.to_string(),
            Cordon {
                at_ms,
                drain_deadline_ms: drain,
            },
        );
        self.touch(node);
        Ok(Applied {
            node: Some(node.to_string()),
            ..Applied::default()
        })
    }

    pub(super) fn uncordon(&mut self, node: &str) -> Result<Applied, Rejection> {
        if !self.nodes.contains_key(node) {
            return Err(Rejection::NoSuchNode(node.to_string()));
        }
        self.cordons.remove(node);
        self.touch(node);
        Ok(Applied {
            node: Some(node.to_string()),
            ..Applied::default()
        })
    }

    /// Jobs on draining hosts whose deadline is at or before `now_ms` and
    /// that are not stopping yet: what the leader evicts.
    pub fn due_evictions(&self, now_ms: i64) -> Vec<(String, String)> {
        self.cordons
            .iter()
            .filter(|(_, c)| c.drain_deadline_ms.is_some_and(|d| d <= now_ms))
            .flat_map(|(node, _)| {
                self.jobs_on(node)
                    .filter(|j| j.state.holds_resources() && j.state != JobState::Stopping)
                    .map(|j| (j.id.clone(), node.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    pub(super) fn evict(&mut self, index: u64, ids: &[String], reason: &str) -> Applied {
        let mut applied = Applied::default();
        for id in ids {
            let Some(job) = self.jobs.get_mut(id) else {
                continue;
            };
            if !job.state.holds_resources() || job.state == JobState::Stopping {
                continue;
            }
            if job.spec.restart != RestartPolicy::No {
                // Like a preemption: stopped here, then queued with its age.
                job.requeue = true;
                job.requeue_reason = reason.to_string();
            } else {
                job.message = format!("stopped: {reason}");
            }
            job.state = JobState::Stopping;
            job.stop_index = index;
            if let Some(node) = job.node.clone() {
                self.touch(&node);
            }
            applied.jobs.push(id.clone());
        }
        applied
    }

    /// Forgets `node`: the jobs still holding resources there fail (and
    /// restart elsewhere under their policy; a stop in progress ends as
    /// cancelled). The API refuses this for a live host unless forced.
    pub(super) fn remove_node(
        &mut self,
        index: u64,
        node: &str,
        at_ms: i64,
    ) -> Result<Applied, Rejection> {
        if !self.nodes.contains_key(node) {
            return Err(Rejection::NoSuchNode(node.to_string()));
        }
        let ids: Vec<String> = self.jobs_on(node).map(|j| j.id.clone()).collect();
        let mut applied = Applied {
            node: Some(node.to_string()),
            ..Applied::default()
        };
        for id in ids {
            let message = format!("its host {node} was removed from the cluster");
            if let Ok(a) = self.finish(index, &id, Finish::Failed(message), at_ms) {
                applied.jobs.extend(a.jobs);
            }
        }
        self.nodes.remove(node);
        self.cordons.remove(node);
        self.touch(node);
        Ok(applied)
    }

    /// The job's host went silent for `--node-lost-after`. `Wait` jobs are
    /// never proposed here (the leader keeps them); a refusal says so.
    pub(super) fn lost(
        &mut self,
        index: u64,
        id: &str,
        message: &str,
        at_ms: i64,
    ) -> Result<Applied, Rejection> {
        let job = self.job_mut(id)?;
        let restart = match job.spec.on_host_lost.resolve(&job.spec.restart) {
            OnHostLost::Wait => {
                return Err(Rejection::BadTransition(
                    id.into(),
                    "waiting for its host",
                    "be lost",
                ))
            }
            OnHostLost::Restart => true,
            _ => false,
        };
        self.finish_as(
            index,
            id,
            Finish::Failed(message.to_string()),
            at_ms,
            Some(restart),
        )
    }
}
