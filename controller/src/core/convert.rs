//! State records → berth.v1 messages.

use berth_proto::v1 as pb;

use super::wire::{gpus_to_wire, spec_to_wire, state_to_wire};
use super::Telemetry;
use crate::state::{JobRecord, JobState, NodeRecord, State};

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A job with its queue position found by scanning the queue: for single
/// lookups. Listings and events pass positions they already know to `job_at`.
pub fn job(j: &JobRecord, state: &State) -> pb::Job {
    // From the back: the jobs asked about most are the newest.
    let queue_position = if j.state == JobState::Queued {
        state
            .queue
            .iter()
            .rposition(|id| id == &j.id)
            .map_or(0, |p| p as u32 + 1)
    } else {
        0
    };
    job_at(j, queue_position)
}

/// A job whose queue position (1-based; 0 when not queued) the caller knows.
pub fn job_at(j: &JobRecord, queue_position: u32) -> pb::Job {
    pb::Job {
        id: j.id.clone(),
        name: j.name.clone(),
        spec: Some(spec_to_wire(&j.spec)),
        state: state_to_wire(j.state) as i32,
        node: j.node.clone().unwrap_or_default(),
        gpus: gpus_to_wire(&j.gpus),
        container_id: j.container_id.clone(),
        exit_code: j.exit_code,
        message: j.message.clone(),
        submitted_at_ms: j.submitted_at_ms,
        started_at_ms: j.started_at_ms,
        finished_at_ms: j.finished_at_ms,
        queue_position,
        group_id: j.group.clone(),
        task_index: j.task_index,
        preemptions: j.preemptions,
        restarts: j.restarts,
        task_env: j.task_env.clone(),
        published: if j.node.is_some() {
            crate::state::published(&j.spec, &j.picked_ports)
                .iter()
                .map(crate::core::wire::port_to_wire)
                .collect()
        } else {
            Vec::new()
        },
        reserved_millicpus: j.millicpus,
        reserved_memory_bytes: j.memory_bytes,
        // Telemetry, not state: filled by the API from the node's report.
        pull: None,
    }
}

/// A node for `berth nodes`: inventory from the state, live numbers from the
/// last report, holders from the state machine.
pub fn node(n: &NodeRecord, t: Option<&Telemetry>, state: &State, ready: bool) -> pb::Node {
    let reported: std::collections::HashMap<&str, &pb::Gpu> = t
        .map(|t| t.report.gpus.iter().map(|g| (g.uuid.as_str(), g)).collect())
        .unwrap_or_default();
    let gpus = n
        .gpus
        .iter()
        .map(|inv| {
            let live = reported.get(inv.uuid.as_str());
            pb::Gpu {
                index: inv.index,
                uuid: inv.uuid.clone(),
                model: inv.model.clone(),
                memory_total_bytes: inv.memory_total_bytes,
                memory_used_bytes: live.map_or(0, |g| g.memory_used_bytes),
                utilization_percent: live.map_or(0, |g| g.utilization_percent),
                temperature_celsius: live.map_or(0, |g| g.temperature_celsius),
                power_milliwatts: live.map_or(0, |g| g.power_milliwatts),
                cpu_affinity: live.map(|g| g.cpu_affinity.clone()).unwrap_or_default(),
                foreign_processes: live
                    .map(|g| g.foreign_processes.clone())
                    .unwrap_or_default(),
                job_id: state.gpu_holder(&inv.uuid).unwrap_or_default().to_string(),
                topology_group: inv.group.clone(),
                slices: state
                    .gpu_slices(&inv.uuid)
                    .into_iter()
                    .flatten()
                    .map(|(job, bytes)| pb::GpuSlice {
                        job_id: job.clone(),
                        memory_bytes: *bytes,
                    })
                    .collect(),
            }
        })
        .collect();
    let held = state.held_on(&n.name);
    pb::Node {
        name: n.name.clone(),
        agent_addr: n.agent_addr.clone(),
        status: if ready {
            pb::NodeStatus::Ready
        } else {
            pb::NodeStatus::Down
        } as i32,
        gpu_backend: n.gpu_backend.word().to_string(),
        gpus,
        disk: t.and_then(|t| t.report.disk.clone()),
        last_seen_ms_ago: t.map_or(-1, |t| t.at.elapsed().as_millis() as i64),
        docker_version: n.docker_version.clone(),
        daemon: t.and_then(|t| t.report.daemon.clone()),
        labels: n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        cordoned: state.is_cordoned(&n.name),
        draining: state
            .cordons
            .get(&n.name)
            .is_some_and(|c| c.drain_deadline_ms.is_some()),
        drain_deadline_ms: state
            .cordons
            .get(&n.name)
            .and_then(|c| c.drain_deadline_ms)
            .unwrap_or(0),
        live_jobs: state.live_jobs_on(&n.name) as u32,
        millicpus: n.millicpus,
        memory_bytes: n.memory_bytes,
        millicpus_held: held.0,
        memory_held_bytes: held.1,
        numa_nodes: n.numa_nodes,
    }
}
