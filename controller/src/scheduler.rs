//! The pure scheduler: `schedule(&snapshot)` turns a view of the cluster and
//! the FIFO queue into placements. No IO, no clock: the controller builds the
//! snapshot, proposes the plan through the log, and the state machine re-checks
//! it on apply.
//!
//! Policy (issue 2; issue 4 grows it):
//! - Strict FIFO: jobs are placed in submission order; when the head of the
//!   queue fits nowhere, nothing behind it starts (no backfill yet), so a big
//!   job is never starved by a stream of small ones.
//! - Best fit: among the nodes that can take the job, pick the one with the
//!   fewest free GPUs, so partly used hosts fill up first and whole hosts stay
//!   free for big jobs. Ties go to the node name, for determinism.
//! - Within a node, prefer a run of adjacent GPU indexes (on most boards the
//!   closest ones), else the lowest free indexes.

use std::collections::{BTreeSet, HashSet};

use berth_proto::v1::GpuRef;

use crate::state::{norm_proto, proto_eq, Placement};

/// What the scheduler needs to know about one node.
#[derive(Debug, Clone, Default)]
pub struct NodeView {
    pub name: String,
    /// GPUs free for Berth: not held by a live job and not used by foreign processes.
    pub free_gpus: BTreeSet<GpuSlot>,
    /// Image references this node's daemon has (tags and ids).
    pub images: HashSet<String>,
    /// (host port, protocol) already published by live jobs here.
    pub used_ports: HashSet<(u32, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GpuSlot {
    pub index: u32,
    pub uuid: String,
}

/// A queued job as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct QueuedJob {
    pub id: String,
    pub gpus: u32,
    pub image: String,
    pub ports: Vec<(u32, String)>,
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Ready nodes only.
    pub nodes: Vec<NodeView>,
    /// Oldest first.
    pub queue: Vec<QueuedJob>,
}

/// Places as many queued jobs as fit, in FIFO order.
pub fn schedule(snapshot: &Snapshot) -> Vec<Placement> {
    let mut nodes = snapshot.nodes.clone();
    let mut plan = Vec::new();
    for job in &snapshot.queue {
        let Some(best) = pick_node(&nodes, job) else {
            break; // strict FIFO: the head waits, so does everything behind it
        };
        let node = &mut nodes[best];
        let gpus = pick_gpus(&node.free_gpus, job.gpus as usize);
        for g in &gpus {
            node.free_gpus.remove(g);
        }
        for p in &job.ports {
            node.used_ports.insert((p.0, norm_proto(&p.1)));
        }
        plan.push(Placement {
            job_id: job.id.clone(),
            node: node.name.clone(),
            gpus: gpus
                .into_iter()
                .map(|g| GpuRef {
                    index: g.index,
                    uuid: g.uuid,
                })
                .collect(),
        });
    }
    plan
}

/// Index of the best-fit node for `job`, if any node can take it.
fn pick_node(nodes: &[NodeView], job: &QueuedJob) -> Option<usize> {
    nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| fits(n, job))
        .min_by(|(_, a), (_, b)| {
            a.free_gpus
                .len()
                .cmp(&b.free_gpus.len())
                .then_with(|| a.name.cmp(&b.name))
        })
        .map(|(i, _)| i)
}

fn fits(node: &NodeView, job: &QueuedJob) -> bool {
    node.free_gpus.len() >= job.gpus as usize
        && has_image(&node.images, &job.image)
        && job.ports.iter().all(|(port, proto)| {
            !node
                .used_ports
                .iter()
                .any(|(p, q)| p == port && proto_eq(q, proto))
        })
}

/// Whether a node's image set satisfies a reference: a tag ("busybox" means
/// "busybox:latest", as in docker), a full id, or an id prefix of 12+ hex digits.
pub fn has_image(images: &HashSet<String>, reference: &str) -> bool {
    let r = normalize_image(reference);
    if images.contains(&r) {
        return true;
    }
    let hex = r.strip_prefix("sha256:").unwrap_or(&r);
    hex.len() >= 12
        && hex.chars().all(|c| c.is_ascii_hexdigit())
        && images.iter().any(|i| {
            i.strip_prefix("sha256:")
                .is_some_and(|h| h.starts_with(hex))
        })
}

/// Docker's short forms: no tag means `:latest`; `docker.io/library/` is implied.
pub fn normalize_image(reference: &str) -> String {
    let r = reference
        .strip_prefix("docker.io/library/")
        .or_else(|| reference.strip_prefix("docker.io/"))
        .unwrap_or(reference);
    if r.starts_with("sha256:") || r.contains('@') {
        return r.to_string();
    }
    let last = r.rsplit('/').next().unwrap_or(r);
    // A tag is present, or the reference is an id prefix, not a repository name.
    let tagged = last.contains(':');
    let id_prefix = r.len() >= 12 && r.chars().all(|c| c.is_ascii_hexdigit());
    if tagged || id_prefix {
        r.to_string()
    } else {
        format!("{r}:latest")
    }
}

/// `count` GPUs from `free`: the tightest window of consecutive indexes if one
/// exists, else the lowest indexes.
fn pick_gpus(free: &BTreeSet<GpuSlot>, count: usize) -> Vec<GpuSlot> {
    if count == 0 {
        return Vec::new();
    }
    let slots: Vec<&GpuSlot> = free.iter().collect();
    for w in slots.windows(count) {
        if w[count - 1].index - w[0].index == count as u32 - 1 {
            return w.iter().map(|s| (*s).clone()).collect();
        }
    }
    slots.into_iter().take(count).cloned().collect()
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
