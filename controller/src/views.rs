//! Read-only views of the state: the scheduler's snapshot, image sets, and
//! job lookup by id, name or prefix.

use std::collections::HashSet;

use berth_proto::v1::NodeReport;

use crate::core::NODE_DOWN_AFTER;
use crate::machine::Inner;
use crate::scheduler::{GpuSlot, NodeView, QueuedJob, Snapshot};
use crate::state::{JobRecord, State};
use crate::{Error, Result};

pub fn scheduler_snapshot(inner: &Inner) -> Snapshot {
    let state = &inner.state;
    let nodes = state
        .nodes
        .values()
        .filter_map(|node| {
            let t = inner.telemetry.get(&node.name)?;
            if t.at.elapsed() >= NODE_DOWN_AFTER {
                return None;
            }
            let foreign: HashSet<&str> = t
                .report
                .gpus
                .iter()
                .filter(|g| !g.foreign_processes.is_empty())
                .map(|g| g.uuid.as_str())
                .collect();
            let free_gpus = node
                .gpus
                .iter()
                .filter(|g| {
                    state.gpu_holder(&g.uuid).is_none() && !foreign.contains(g.uuid.as_str())
                })
                .map(|g| GpuSlot {
                    index: g.index,
                    uuid: g.uuid.clone(),
                })
                .collect();
            let used_ports = state.ports_on(&node.name).collect();
            Some(NodeView {
                name: node.name.clone(),
                free_gpus,
                images: image_set(&t.report),
                used_ports,
            })
        })
        .collect();
    let queue = state
        .queue
        .iter()
        .filter_map(|id| state.jobs.get(id))
        .map(|j| QueuedJob {
            id: j.id.clone(),
            gpus: j.spec.gpus,
            image: j.spec.image.clone(),
            ports: j
                .spec
                .ports
                .iter()
                .map(|p| (p.host_port, p.protocol.clone()))
                .collect(),
        })
        .collect();
    Snapshot { nodes, queue }
}

/// Every reference an image can be named by on a node: tags and ids.
pub fn image_set(report: &NodeReport) -> HashSet<String> {
    report
        .images
        .iter()
        .flat_map(|i| i.tags.iter().cloned().chain(std::iter::once(i.id.clone())))
        .collect()
}

/// Resolution order, as docker does for containers: exact id, then exact name
/// (newest first), then a unique id prefix.
pub fn resolve_in<'a>(state: &'a State, reference: &str) -> Result<&'a JobRecord> {
    if reference.is_empty() {
        return Err(Error::InvalidArgument(
            "a job id or name is required".into(),
        ));
    }
    if let Some(job) = state.jobs.get(reference) {
        return Ok(job);
    }
    if let Some(id) = state.live_job_named(reference) {
        return Ok(&state.jobs[id]);
    }
    if let Some(job) = state
        .jobs
        .values()
        .filter(|j| j.name == reference)
        .max_by_key(|j| j.submitted_at_ms)
    {
        return Ok(job);
    }
    let mut matches = state
        .jobs
        .range(reference.to_string()..)
        .take_while(|(id, _)| id.starts_with(reference));
    match (matches.next(), matches.next()) {
        (Some((_, job)), None) => Ok(job),
        (Some(_), Some(_)) => Err(Error::InvalidArgument(format!(
            "{reference:?} matches several job ids; give more characters"
        ))),
        _ => Err(Error::NotFound(format!(
            "no job with id or name {reference:?}"
        ))),
    }
}
