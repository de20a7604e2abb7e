//! The scheduler's input: ready nodes with each GPU's use, and the queue.
//! Built under the state lock on every pass, so it reuses what did not
//! change: each node's view is cached until the node's jobs or report move
//! (their stamps), and the queue comes from the incremental `queue`.

use std::collections::HashSet;
use std::sync::Arc;

use berth_proto::internal::v1::NodeReport;

use super::{lock, Leader};
use crate::core::machine::Inner;
use crate::core::{down_after, Telemetry};
use crate::scheduler::{normalize_image, GpuUse, GpuView, NodeView, Snapshot, Victim};
use crate::state::{is_slice, JobState, NodeRecord, State};

/// A node's scheduling view and its users' GPU-equivalents, with the stamps
/// it was built at.
pub struct CachedNode {
    pub stamps: (u64, u64),
    pub view: Arc<NodeView>,
    pub usage: Vec<(String, u64)>,
}

impl Leader {
    /// The scheduler's view: ready nodes with each GPU's use, and the queue
    /// (a gang as one entry). Called with the state locked (`inner`), so
    /// keep it lean; refreshes the caches as it goes.
    pub(super) fn snapshot(&self, inner: &Inner, move_images: bool) -> Snapshot {
        let mut caches = lock(&self.caches);
        build(
            inner,
            &mut caches,
            move_images,
            down_after(self.ctl.node_lost_after),
            self.ctl.hosts,
        )
    }
}

fn build(
    inner: &Inner,
    caches: &mut super::Caches,
    move_images: bool,
    down_after: std::time::Duration,
    hosts: crate::scheduler::host::HostPolicy,
) -> Snapshot {
    let Inner {
        state, telemetry, ..
    } = inner;
    let super::Caches {
        queue: sched,
        node_views,
    } = caches;
    let mut snap = Snapshot {
        move_images,
        hosts,
        now_ms: crate::core::convert::now_ms(),
        ..Snapshot::default()
    };
    for node in state.nodes.values() {
        let Some(t) = telemetry.get(&node.name) else {
            continue;
        };
        // Down, or cordoned by an admin: nothing new goes there.
        if t.at.elapsed() >= down_after || state.is_cordoned(&node.name) {
            continue;
        }
        // A node whose jobs and report did not change since the last pass
        // (most of them, at 1,000 hosts) is not rebuilt.
        let stamps = (state.node_stamp(&node.name), t.stamp);
        let cached = match node_views.get(&node.name) {
            Some(c) if c.stamps == stamps => c,
            _ => {
                let (view, usage) = node_view(state, node, t);
                node_views.insert(
                    node.name.clone(),
                    CachedNode {
                        stamps,
                        view: Arc::new(view),
                        usage,
                    },
                );
                &node_views[&node.name]
            }
        };
        for (user, share) in &cached.usage {
            match snap.usage.get_mut(user) {
                Some(u) => *u += share,
                None => {
                    snap.usage.insert(user.clone(), *share);
                }
            }
        }
        snap.nodes.push(cached.view.clone());
        // Sizes matter only to choose hosts that would receive an image.
        for img in t.report.images.iter().filter(|_| move_images) {
            for tag in &img.tags {
                snap.image_sizes
                    .insert(normalize_image(tag), img.size_bytes);
            }
            snap.image_sizes.insert(img.id.clone(), img.size_bytes);
        }
    }
    for (user, _) in state.quotas.iter() {
        snap.whole_held.insert(user.clone(), state.user_gpus(user));
    }
    snap.quotas = state.quotas.iter().map(|(u, q)| (u.clone(), *q)).collect();
    // What each user's CPU and memory quota has left (0 in one: no limit).
    for (user, &(cpu_q, mem_q)) in &state.host_quotas {
        let (cpu, mem) = state.user_held(user);
        let left = |q: u64, used: u64| {
            if q == 0 {
                u64::MAX
            } else {
                q.saturating_sub(used)
            }
        };
        snap.host_quota_left
            .insert(user.clone(), (left(cpu_q, cpu), left(mem_q, mem)));
    }
    snap.queue = sched.snapshot(state);
    snap.queue_keys = Some(sched.keys());
    for group in sched.capped_groups() {
        snap.group_live
            .insert(group.clone(), state.group_live(group));
    }
    snap
}

/// One node's scheduling view (each GPU's use, ports, preemptible jobs) and
/// the GPU-equivalents each user holds there.
fn node_view(state: &State, node: &NodeRecord, t: &Telemetry) -> (NodeView, Vec<(String, u64)>) {
    let mut usage: Vec<(String, u64)> = Vec::new();
    // Reports list GPUs in inventory order; look further only if not.
    let reported = |i: usize, uuid: &str| {
        t.report
            .gpus
            .get(i)
            .filter(|g| g.uuid == uuid)
            .or_else(|| t.report.gpus.iter().find(|g| g.uuid == uuid))
    };
    let mut victims = Vec::new();
    let mut releasing = HashSet::new();
    // Only jobs holding GPUs shape the view: walk the node's GPUs, not all
    // its jobs (a host may run thousands of CPU-only jobs, and this runs on
    // every leader pass that follows a change on the node).
    for job in state.gpu_jobs_on(node) {
        if job.state == JobState::Stopping && !is_slice(&job.spec) {
            releasing.extend(job.gpus.iter().map(|g| g.uuid.as_str()));
        } else if job.state != JobState::Stopping && job.spec.preemptible && job.spec.gpus > 0 {
            victims.push(Victim {
                job_id: job.id.clone(),
                priority: job.spec.priority,
                user: job.spec.user.clone(),
                gpus: job.gpus.iter().map(|g| g.index).collect(),
            });
        }
        let share = if is_slice(&job.spec) {
            let total = node
                .gpus
                .iter()
                .find(|g| job.gpus.first().is_some_and(|j| j.uuid == g.uuid));
            job.spec.gpu_memory_bytes.saturating_mul(1000)
                / total.map_or(1, |g| g.memory_total_bytes.max(1))
        } else {
            crate::state::whole_gpus(job) as u64 * 1000
        };
        match usage.iter_mut().find(|(u, _)| *u == job.spec.user) {
            Some((_, u)) => *u += share,
            None => usage.push((job.spec.user.clone(), share)),
        }
    }
    let gpus = node
        .gpus
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let live = reported(i, &g.uuid);
            let used = live.map_or(0, |l| l.memory_used_bytes);
            let use_ = if releasing.contains(g.uuid.as_str()) {
                GpuUse::Releasing
            } else if state.gpu_holder(&g.uuid).is_some() {
                GpuUse::Held
            } else if let Some(s) = state.gpu_slices(&g.uuid) {
                GpuUse::Shared(s.values().sum())
            } else if live.is_some_and(|l| !l.foreign_processes.is_empty()) {
                GpuUse::Foreign
            } else {
                GpuUse::Free
            };
            GpuView {
                index: g.index,
                uuid: g.uuid.as_str().into(),
                model: g.model.to_lowercase().into(),
                memory_total: g.memory_total_bytes,
                memory_free: g.memory_total_bytes.saturating_sub(used),
                group: g.group.as_str().into(),
                use_,
            }
        })
        .collect();
    let held = state.held_on(&node.name);
    let view = NodeView {
        name: node.name.clone(),
        labels: Arc::new(node.labels.clone()),
        gpus,
        images: Arc::new(image_set(&t.report)),
        used_ports: state.ports_on(&node.name).collect(),
        disk_free: t.report.disk.as_ref().map_or(0, |d| d.free_bytes),
        live_jobs: state.live_jobs_on(&node.name) as u32,
        exclusive: state.exclusive_holder(&node.name).is_some(),
        victims,
        millicpus: node.millicpus,
        memory_bytes: node.memory_bytes,
        millicpus_held: held.0,
        memory_held: held.1,
    };
    (view, usage)
}

/// Every reference an image can be named by on a node: tags and ids.
pub fn image_set(report: &NodeReport) -> HashSet<String> {
    report
        .images
        .iter()
        .flat_map(|i| i.tags.iter().cloned().chain(std::iter::once(i.id.clone())))
        .collect()
}
