//! Questions that need the scheduler's view: why a queued job waits
//! (`berth explain`), and where a job would go (`berth run --dry-run`).

use std::collections::HashSet;

use super::Leader;
use crate::core::Target;
use crate::scheduler::{self, Explanation};
use crate::state::{JobRecord, JobSpec, JobState};
use crate::{Error, Result};

impl Leader {
    /// Where the next scheduling pass would place a job of `spec` (or why
    /// it would wait), as if it were queued now behind everything already
    /// queued (a dry run; the caller has validated it). Writes nothing.
    pub fn plan(&self, spec: &JobSpec, name: &str) -> Result<scheduler::Explanation> {
        let inner = self.ctl.shared.lock();
        let mut snapshot = self.snapshot(&inner, true);
        let down = down_nodes(&inner.state, &snapshot);
        drop(inner);
        let id = format!("(dry run) {name}");
        let tasks = spec.nodes.max(1);
        let job = crate::scheduler::QueuedJob {
            id: id.clone(),
            gang: if tasks > 1 {
                (0..tasks).map(|r| format!("{id} rank {r}")).collect()
            } else {
                Vec::new()
            },
            ..super::queue::from_spec(spec, u64::MAX)
        };
        let mut queue = (*snapshot.queue).clone();
        queue.push(std::sync::Arc::new(job));
        snapshot.queue = std::sync::Arc::new(queue);
        snapshot.queue_keys = None; // they describe the queue without it
        scheduler::explain(&snapshot, &id, &down)
            .ok_or_else(|| Error::Unavailable("the dry run lost its job; try again".into()))
    }

    /// Why a queued job waits (for a gang task: why its gang waits).
    pub fn explain(&self, reference: &str) -> Result<(JobRecord, Explanation)> {
        let job = match self.ctl.resolve_target(reference)? {
            Target::Job(j) => *j,
            Target::Group(_, tasks) => tasks
                .iter()
                .find(|t| t.state == JobState::Queued)
                .or(tasks.first())
                .cloned()
                .ok_or_else(|| Error::NotFound(format!("group {reference} has no tasks")))?,
        };
        if job.state != JobState::Queued {
            let where_ = job.node.clone().unwrap_or_default();
            let summary = match job.state {
                s if s.is_finished() => format!("not queued: it is {}", s.word()),
                s => format!("not queued: it is {} on {where_}", s.word()),
            };
            return Ok((
                job,
                Explanation {
                    summary,
                    ..Explanation::default()
                },
            ));
        }
        let inner = self.ctl.shared.lock();
        let snapshot = self.snapshot(&inner, true);
        let queued_id = inner
            .state
            .groups
            .get(&job.group)
            .filter(|g| g.kind == crate::state::GroupKind::Gang)
            .map_or_else(|| job.id.clone(), |g| g.id.clone());
        let down = down_nodes(&inner.state, &snapshot);
        let e = scheduler::explain(&snapshot, &queued_id, &down)
            .ok_or_else(|| Error::NotFound(format!("job {} is not in the queue", job.id)))?;
        drop(inner);
        Ok((job, e))
    }
}

/// Registered nodes the snapshot left out, by why: cordoned (or draining)
/// by an admin, or not reporting.
fn down_nodes(
    state: &crate::state::State,
    snapshot: &scheduler::Snapshot,
) -> Vec<(String, Vec<String>)> {
    let ready: HashSet<&str> = snapshot.nodes.iter().map(|n| n.name.as_str()).collect();
    let (mut cordoned, mut draining, mut down) = (Vec::new(), Vec::new(), Vec::new());
    for n in state.nodes.keys().filter(|n| !ready.contains(n.as_str())) {
        match state.cordons.get(n) {
            Some(c) if c.drain_deadline_ms.is_some() => draining.push(n.clone()),
            Some(_) => cordoned.push(n.clone()),
            None => down.push(n.clone()),
        }
    }
    vec![
        ("cordoned (berth node uncordon)".to_string(), cordoned),
        ("draining".to_string(), draining),
        ("not reporting (agent down)".to_string(), down),
    ]
}
