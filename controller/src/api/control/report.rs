//! An agent's report: its telemetry is kept, and its container facts become
//! job transitions. `transitions` is pure (state + report in, commands
//! out), so every rule below has a unit test.
//!
//! A missing container only counts when the report says the agent had already
//! reconciled the revision that placed (or stopped) the job; otherwise the agent
//! may simply not have created it yet, or may have just restarted.

use std::collections::HashMap;

use berth_proto::internal::v1::{ContainerState, ContainerStatus, NodeReport};
use berth_proto::v1::ImagePull;

use crate::core::{convert, Controller, Telemetry};
use crate::state::{Command, JobState, NodeRecord, State};
use crate::{Error, Result};

pub fn transitions(state: &State, report: &NodeReport, now_ms: i64) -> Vec<Command> {
    let mut out = Vec::new();
    // Only a container of the job's current attempt speaks for it: after a
    // preemption the old one lingers, exited.
    let containers: HashMap<(&str, u32), &ContainerStatus> = report
        .containers
        .iter()
        .map(|c| ((c.job_id.as_str(), c.attempt), c))
        .collect();
    let failures: HashMap<&str, &str> = report
        .failures
        .iter()
        .map(|f| (f.job_id.as_str(), f.message.as_str()))
        .collect();
    // Jobs whose image is still arriving: no container is expected yet.
    let pulling: HashMap<&str, &ImagePull> = report
        .pulls
        .iter()
        .filter(|p| p.error.is_empty())
        .flat_map(|p| p.job_ids.iter().map(move |j| (j.as_str(), p)))
        .collect();
    let on_node = state.jobs_on(&report.node);
    for job in on_node {
        let id = job.id.clone();
        let at = |ms: i64| if ms > 0 { ms } else { now_ms };
        // A reported failure wins over a container that is not running:
        // `docker start` can fail after `create` succeeded (a taken host
        // port), leaving a container that never ran; the fence stops one
        // that did, and says why.
        let failure = failures.get(job.id.as_str());
        let container = containers.get(&(job.id.as_str(), job.attempt()));
        let ran_then_failed = container
            .is_some_and(|c| c.state() != ContainerState::Created && !c.state().is_running());
        match container.filter(|c| failure.is_none() || c.state().is_running()) {
            Some(c) => {
                let ran = c.state() != ContainerState::Created;
                let done = !(c.state() == ContainerState::Created || c.state().is_running());
                if ran && job.container_id.is_empty() {
                    out.push(Command::Started {
                        job_id: id.clone(),
                        container_id: c.container_id.clone(),
                        at_ms: at(c.started_at_ms),
                    });
                }
                let stopped_before_start = job.state == JobState::Stopping && !ran;
                if done || stopped_before_start && report.observed_revision >= job.stop_index {
                    out.push(Command::Exited {
                        job_id: id,
                        exit_code: c.exit_code,
                        at_ms: at(c.finished_at_ms),
                    });
                }
            }
            None if failure.is_none() && pulling.contains_key(job.id.as_str()) => {
                if job.state == JobState::Placed {
                    out.push(Command::Pulling { job_id: id });
                }
            }
            None => {
                let message = if let Some(msg) = failure.filter(|_| ran_then_failed) {
                    msg.to_string()
                } else if let Some(msg) = failure {
                    format!("container could not start: {msg}")
                } else {
                    let seen = match job.state {
                        JobState::Stopping => job.stop_index.max(job.placed_index),
                        _ => job.placed_index,
                    };
                    if report.observed_revision < seen {
                        continue; // the agent has not acted on this job yet
                    }
                    match job.state {
                        JobState::Stopping => "stopped before its container started".to_string(),
                        JobState::Running => {
                            "its container disappeared (removed outside Berth?)".to_string()
                        }
                        _ => "the agent reconciled but no container exists".to_string(),
                    }
                };
                out.push(Command::Failed {
                    job_id: id,
                    message,
                    at_ms: now_ms,
                });
            }
        }
    }
    out
}

impl Controller {
    /// Takes an agent's report: keeps its telemetry, and turns container facts
    /// into job transitions (started, exited, failed, stopped).
    pub async fn report(&self, report: NodeReport) -> Result<()> {
        self.ensure_leader()?;
        let commands = {
            let mut inner = self.shared.lock();
            if !inner.state.nodes.contains_key(&report.node) {
                return Err(Error::FailedPrecondition(format!(
                    "node {} is not registered; register first",
                    report.node
                )));
            }
            let commands = transitions(&inner.state, &report, convert::now_ms());
            let telemetry = Telemetry::next(inner.telemetry.get(&report.node), report);
            inner
                .telemetry
                .insert(telemetry.report.node.clone(), telemetry);
            commands
        };
        for cmd in commands {
            if let Err(e) = self.propose(cmd).await {
                tracing::warn!(error = %e, "report transition refused");
            }
        }
        self.shared.schedule_needed.notify_one();
        Ok(())
    }

    /// Registers (or re-registers) a node; a no-op when nothing changed.
    pub async fn register(&self, node: NodeRecord) -> Result<String> {
        self.ensure_leader()?;
        // Agents label containers with the cluster id: never hand out none.
        self.ensure_cluster_id().await?;
        let unchanged = self.read(|s| s.nodes.get(&node.name) == Some(&node));
        if !unchanged {
            tracing::info!(node = %node.name, gpus = node.gpus.len(), backend = node.gpu_backend.word(), "node registered");
            self.propose(Command::RegisterNode(node)).await?;
        }
        Ok(self.cluster_id())
    }
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
