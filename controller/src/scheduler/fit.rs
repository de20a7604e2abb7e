//! The working copy of the cluster during one pass: which hosts and GPUs can
//! take a job, best-fit host choice, close GPUs within a host.

use std::collections::{BTreeSet, HashSet};

use super::host;
use super::image::holds;
use super::{GpuUse, GpuView, NodeView, QueuedJob, Snapshot};
use crate::state::norm_proto;

/// Everything that decides whether a job fits, and nothing else: two jobs
/// of one shape fit in exactly the same places. Compared in place (no
/// clones): this runs for every queued job on every pass.
pub fn same_shape(a: &QueuedJob, b: &QueuedJob) -> bool {
    a.gpus == b.gpus
        && a.memory == b.memory
        && a.exclusive == b.exclusive
        && a.gang.len() == b.gang.len()
        && a.model == b.model
        && a.image == b.image
        && a.constraints == b.constraints
        && a.ports == b.ports
        && a.all_gpus == b.all_gpus
        && a.millicpus == b.millicpus
        && a.memory_bytes == b.memory_bytes
        && a.pick_ports == b.pick_ports
}

/// A hash of exactly what `same_shape` compares.
pub fn shape_hash(job: &QueuedJob) -> u64 {
    use std::hash::{Hash, Hasher};
    // Fx, not SipHash: keys are ours, not an attacker's, and this is hot.
    let mut h = rustc_hash::FxHasher::default();
    (job.gpus, job.memory, job.exclusive, job.gang.len()).hash(&mut h);
    (&job.model, &job.image, &job.constraints, &job.ports).hash(&mut h);
    (
        job.all_gpus,
        job.millicpus,
        job.memory_bytes,
        &job.pick_ports,
    )
        .hash(&mut h);
    h.finish()
}

/// Shapes seen in a pass, by hash, each with a job that has it.
#[derive(Default)]
pub struct ShapeSet(rustc_hash::FxHashMap<u64, Vec<usize>>);

impl ShapeSet {
    pub fn contains(
        &self,
        queue: &[std::sync::Arc<QueuedJob>],
        hash: u64,
        job: &QueuedJob,
    ) -> bool {
        self.0
            .get(&hash)
            .is_some_and(|reps| reps.iter().any(|&r| same_shape(&queue[r], job)))
    }

    pub fn insert(&mut self, hash: u64, index: usize) {
        self.0.entry(hash).or_default().push(index);
    }
}

/// One task's place: a host, its GPUs, and the GPU-equivalents (thousandths) it uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Assigned {
    pub node: String,
    pub gpus: Vec<(u32, String)>,
    pub share: u64,
    /// Host ports picked (`QueuedJob::pick_ports` order).
    pub ports: Vec<u32>,
    /// (thousandths of a core, bytes) held on the host.
    pub held: (u64, u64),
}

/// What a host can give one task.
struct HostFit {
    node: usize,
    gpus: Vec<usize>,
    has_image: bool,
}

#[derive(Clone)]
pub struct Cluster {
    pub nodes: Vec<NodeView>,
    /// Hosts by number of free GPUs: `buckets[n]` holds the hosts with n free.
    buckets: Vec<BTreeSet<usize>>,
    /// (host, GPU position) of every shared GPU, for packing slices.
    shared: BTreeSet<(usize, usize)>,
    /// Hosts held whole for an exclusive job's reservation.
    pub reserved_hosts: HashSet<usize>,
    /// Most room left on any shared GPU; `None` when it must be recomputed.
    shared_room: std::cell::Cell<Option<u64>>,
    /// CPU and memory one task of the job being placed may hold: what its
    /// user's quota has left (`host::NO_LIMIT` when none).
    pub limit: (u64, u64),
}

impl Cluster {
    pub fn new(nodes: &[std::sync::Arc<NodeView>]) -> Cluster {
        let max = nodes.iter().map(|n| n.gpus.len()).max().unwrap_or(0);
        let mut c = Cluster {
            nodes: nodes.iter().map(|n| NodeView::clone(n)).collect(),
            buckets: vec![BTreeSet::new(); max + 1],
            shared: BTreeSet::new(),
            reserved_hosts: HashSet::new(),
            shared_room: std::cell::Cell::new(None),
            limit: host::NO_LIMIT,
        };
        for (i, n) in nodes.iter().enumerate() {
            c.buckets[free_count(n)].insert(i);
            for (g, gpu) in n.gpus.iter().enumerate() {
                if matches!(gpu.use_, GpuUse::Shared(_)) {
                    c.shared.insert((i, g));
                }
            }
        }
        c
    }

    /// Places every task of `job` (one, or a gang's on distinct hosts) and
    /// updates the working state; `None` (and nothing changed) if it cannot.
    pub fn place(&mut self, job: &QueuedJob, snap: &Snapshot) -> Option<Vec<Assigned>> {
        let tasks = job.gang.len().max(1);
        let fits = self.choose(job, snap, tasks)?;
        Some(fits.into_iter().map(|f| self.take(f, job, snap)).collect())
    }

    /// The most free GPUs any host has.
    pub fn max_free(&self) -> usize {
        self.buckets
            .iter()
            .rposition(|b| !b.is_empty())
            .unwrap_or(0)
    }

    /// The most unreserved memory on any shared GPU.
    pub fn max_shared_room(&self) -> u64 {
        if let Some(r) = self.shared_room.get() {
            return r;
        }
        let room = self
            .shared
            .iter()
            .filter_map(|&(n, g)| match self.nodes[n].gpus[g].use_ {
                GpuUse::Shared(r) => Some(self.nodes[n].gpus[g].memory_total.saturating_sub(r)),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        self.shared_room.set(Some(room));
        room
    }

    /// A quick necessary condition: `true` means `job` cannot fit now
    /// (not enough free GPUs on any host, no room for a slice anywhere).
    pub fn cannot_fit(&self, job: &QueuedJob) -> bool {
        if job.gpus > 0 {
            job.gpus as usize > self.max_free()
        } else if job.all_gpus {
            self.max_free() == 0
        } else if job.memory > 0 {
            self.max_free() == 0 && self.max_shared_room() < job.memory
        } else {
            false
        }
    }

    /// Whether `job` would fit if no reservation held anything (for `explain`).
    pub fn fits_without_reservation(&self, job: &QueuedJob, snap: &Snapshot) -> bool {
        let mut c = self.clone();
        c.reserved_hosts.clear();
        for n in 0..c.nodes.len() {
            for g in 0..c.nodes[n].gpus.len() {
                if c.nodes[n].gpus[g].use_ == GpuUse::Reserved {
                    c.set_use(n, g, GpuUse::Free);
                }
            }
        }
        c.choose(job, snap, job.gang.len().max(1)).is_some()
    }

    /// Best hosts for `tasks` tasks of `job`: holders of the image first, then
    /// the fewest free GPUs, then the name (the snapshot's node order).
    fn choose(&self, job: &QueuedJob, snap: &Snapshot, tasks: usize) -> Option<Vec<HostFit>> {
        let mut with_image = Vec::new();
        let mut without = Vec::new();
        if job.gpus == 0 && job.memory > 0 && tasks == 1 {
            // Pack slices: an already shared GPU first (tightest room).
            if let Some(f) = self.best_shared(job, snap) {
                return Some(vec![f]);
            }
        }
        let from = (job.gpus as usize).max(usize::from(job.memory > 0 || job.all_gpus));
        'scan: for bucket in self.buckets.iter().skip(from) {
            for &n in bucket {
                if let Some(f) = self.host_fit(n, job, snap) {
                    if f.has_image {
                        with_image.push(f);
                        if with_image.len() == tasks {
                            break 'scan;
                        }
                    } else if without.len() < tasks {
                        without.push(f);
                    }
                }
            }
        }
        // A host lacking the image only when the holders cannot take the job.
        with_image.extend(without);
        with_image.truncate(tasks);
        (with_image.len() == tasks).then_some(with_image)
    }

    /// The shared GPU with the least room left that still holds the slice.
    fn best_shared(&self, job: &QueuedJob, snap: &Snapshot) -> Option<HostFit> {
        let mut best: Option<(u64, HostFit)> = None;
        for &(n, g) in &self.shared {
            let gpu = &self.nodes[n].gpus[g];
            let GpuUse::Shared(reserved) = gpu.use_ else {
                continue;
            };
            let room = gpu.memory_total.saturating_sub(reserved);
            if room < job.memory
                || !model_ok(gpu, &job.model)
                || best.as_ref().is_some_and(|b| b.0 <= room)
            {
                continue;
            }
            let Some(has_image) = self.host_ok(n, job, snap) else {
                continue;
            };
            if host::fits(job, &self.nodes[n], 0, &snap.hosts, self.limit).is_err() {
                continue;
            }
            best = Some((
                room,
                HostFit {
                    node: n,
                    gpus: vec![g],
                    has_image,
                },
            ));
        }
        best.map(|b| b.1)
    }

    /// Host-level checks (not GPUs): `Some(has_image)` when the host can run the job.
    pub fn host_ok(&self, n: usize, job: &QueuedJob, snap: &Snapshot) -> Option<bool> {
        let node = &self.nodes[n];
        if node.exclusive || self.reserved_hosts.contains(&n) {
            return None;
        }
        if job.exclusive && (node.live_jobs > 0 || node.gpus.iter().any(|g| g.use_ != GpuUse::Free))
        {
            return None;
        }
        if !job.constraints.iter().all(|c| c.holds(&node.labels)) {
            return None;
        }
        if !job
            .ports
            .iter()
            .all(|(p, proto)| !node.used_ports.contains(&(*p, norm_proto(proto))))
        {
            return None;
        }
        image_ok(node, job, snap)
    }

    fn host_fit(&self, n: usize, job: &QueuedJob, snap: &Snapshot) -> Option<HostFit> {
        let has_image = self.host_ok(n, job, snap)?;
        let node = &self.nodes[n];
        let gpus = if job.all_gpus {
            let all = node.gpus.len();
            if all == 0 || !node.gpus.iter().all(|g| whole_ok(g, job)) {
                return None;
            }
            (0..all).collect()
        } else if job.gpus > 0 {
            let eligible: Vec<usize> = (0..node.gpus.len())
                .filter(|&g| whole_ok(&node.gpus[g], job))
                .collect();
            if eligible.len() < job.gpus as usize {
                return None;
            }
            pick_close(&node.gpus, &eligible, job.gpus as usize)
        } else if job.memory > 0 {
            // A fresh GPU for a slice: the one with the least free memory that holds it.
            let g = (0..node.gpus.len())
                .filter(|&g| {
                    let gpu = &node.gpus[g];
                    gpu.use_ == GpuUse::Free
                        && gpu.memory_free >= job.memory
                        && model_ok(gpu, &job.model)
                })
                .min_by_key(|&g| node.gpus[g].memory_free)?;
            vec![g]
        } else {
            Vec::new()
        };
        let whole = if job.gpus > 0 || job.all_gpus {
            gpus.len()
        } else {
            0
        };
        host::fits(job, node, whole, &snap.hosts, self.limit).ok()?;
        Some(HostFit {
            node: n,
            gpus,
            has_image,
        })
    }

    /// Commits a fit to the working state.
    fn take(&mut self, f: HostFit, job: &QueuedJob, snap: &Snapshot) -> Assigned {
        let mut share = 0;
        let mut gpus = Vec::new();
        let whole = job.gpus > 0 || job.all_gpus;
        let held = host::reservation(
            job,
            &self.nodes[f.node],
            if whole { f.gpus.len() } else { 0 },
            &snap.hosts,
        );
        let ports = host::pick_ports(&self.nodes[f.node], &job.pick_ports, snap.hosts.ports)
            .unwrap_or_default();
        for &g in &f.gpus {
            let gpu = &self.nodes[f.node].gpus[g];
            gpus.push((gpu.index, gpu.uuid.to_string()));
            if whole {
                share += 1000;
                self.set_use(f.node, g, GpuUse::Held);
            } else {
                let reserved = match gpu.use_ {
                    GpuUse::Shared(r) => r,
                    _ => 0,
                };
                share += job.memory.saturating_mul(1000) / gpu.memory_total.max(1);
                self.set_use(f.node, g, GpuUse::Shared(reserved + job.memory));
            }
        }
        let node = &mut self.nodes[f.node];
        node.live_jobs += 1;
        node.exclusive |= job.exclusive;
        for (p, proto) in &job.ports {
            node.used_ports.insert((*p, norm_proto(proto)));
        }
        for (p, proto) in ports.iter().zip(&job.pick_ports) {
            node.used_ports.insert((*p, norm_proto(proto)));
        }
        node.millicpus_held += held.0;
        node.memory_held += held.1;
        Assigned {
            node: node.name.clone(),
            gpus,
            share,
            ports,
            held,
        }
    }

    /// Changes one GPU's use, keeping the buckets and the shared set right.
    pub fn set_use(&mut self, n: usize, g: usize, to: GpuUse) {
        let before = free_count(&self.nodes[n]);
        self.nodes[n].gpus[g].use_ = to;
        let after = free_count(&self.nodes[n]);
        if before != after {
            self.buckets[before].remove(&n);
            self.buckets[after].insert(n);
        }
        if matches!(to, GpuUse::Shared(_)) {
            self.shared.insert((n, g));
        } else {
            self.shared.remove(&(n, g));
        }
        self.shared_room.set(None);
    }
}

pub fn free_count(n: &NodeView) -> usize {
    n.gpus.iter().filter(|g| g.use_ == GpuUse::Free).count()
}

pub fn model_ok(gpu: &GpuView, model: &str) -> bool {
    model.is_empty() || gpu.model.contains(model)
}

/// A free GPU of the right model with enough free memory.
pub fn whole_ok(gpu: &GpuView, job: &QueuedJob) -> bool {
    gpu.use_ == GpuUse::Free && model_ok(gpu, &job.model) && gpu.memory_free >= job.memory
}

/// `Some(true)` if the host holds the image, `Some(false)` if it can receive
/// it (moves allowed, size known, twice that free on disk for the archive and
/// its unpacked layers), `None` otherwise.
pub fn image_ok(node: &NodeView, job: &QueuedJob, snap: &Snapshot) -> Option<bool> {
    if holds(&node.images, &job.image) {
        return Some(true);
    }
    let size = snap.image_sizes.get(&job.image)?;
    (snap.move_images && node.disk_free >= size.saturating_mul(2)).then_some(false)
}

/// `count` of the `eligible` GPU positions, as close as possible: all in one
/// topology group (the tightest that has room), else the tightest run of
/// adjacent indexes, else the lowest indexes.
pub fn pick_close(gpus: &[GpuView], eligible: &[usize], count: usize) -> Vec<usize> {
    if count == 0 {
        return Vec::new();
    }
    let mut groups: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
    for &g in eligible {
        if !gpus[g].group.is_empty() {
            groups.entry(&gpus[g].group).or_default().push(g);
        }
    }
    if let Some(members) = groups
        .values()
        .filter(|m| m.len() >= count)
        .min_by_key(|m| m.len())
    {
        return members[..count].to_vec();
    }
    for w in eligible.windows(count) {
        if gpus[w[count - 1]].index - gpus[w[0]].index == count as u32 - 1 {
            return w.to_vec();
        }
    }
    eligible[..count].to_vec()
}
