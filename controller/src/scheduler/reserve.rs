//! The reservation of the highest-ranked job that does not fit, and the
//! preemptions that make room for it.

use super::fit::{image_ok, model_ok, Cluster};
use super::{GpuUse, QueuedJob, Snapshot};

pub struct Reservation {
    pub hosts: Vec<String>,
    /// Jobs to stop and requeue for it.
    pub victims: Vec<String>,
}

/// How close one host is to taking one task of the job.
struct Candidate {
    node: usize,
    /// GPUs still missing once the free and releasing ones are counted.
    missing: usize,
    /// Lower-priority preemptible jobs whose GPUs would cover `missing`.
    victims: Option<Vec<String>>,
    victim_gpus: usize,
}

/// Reserves hosts for `job` in `work` (their free matching GPUs, or the whole
/// host for an exclusive job) and picks victims to preempt if that makes it
/// fit. `None` when no host could ever take it (nothing to wait for).
pub fn reserve(work: &mut Cluster, job: &QueuedJob, snap: &Snapshot) -> Option<Reservation> {
    let tasks = job.gang.len().max(1);
    if job.gpus == 0 && job.memory == 0 && !job.exclusive {
        // Blocked by ports or images only: nothing GPUs could change.
        return None;
    }
    let mut cands: Vec<Candidate> = (0..work.nodes.len())
        .filter_map(|n| candidate(work, n, job, snap))
        .collect();
    if cands.len() < tasks {
        return None;
    }
    // Hosts that need nothing but releasing GPUs first, then those a
    // preemption completes (fewest victims, fewest GPUs stopped), then the
    // rest, closest first. The sort is stable: ties keep the node order.
    cands.sort_by_key(|c| match (&c.missing, &c.victims) {
        (0, _) => (0, 0, 0, 0),
        (_, Some(v)) => (1, v.len(), c.victim_gpus, 0),
        (m, None) => (2, 0, 0, *m),
    });
    cands.truncate(tasks);
    let preempting = cands.iter().all(|c| c.missing == 0 || c.victims.is_some());
    let mut victims = Vec::new();
    if preempting {
        for c in &mut cands {
            victims.extend(c.victims.take().unwrap_or_default());
        }
    }
    let hosts = cands
        .iter()
        .map(|c| work.nodes[c.node].name.clone())
        .collect();
    for c in &cands {
        hold(work, c.node, job);
    }
    Some(Reservation { hosts, victims })
}

fn candidate(work: &Cluster, n: usize, job: &QueuedJob, snap: &Snapshot) -> Option<Candidate> {
    let node = &work.nodes[n];
    if !job.constraints.iter().all(|c| c.holds(&node.labels)) || image_ok(node, job, snap).is_none()
    {
        return None;
    }
    // GPUs that could ever serve the job: right model, enough memory, not foreign.
    let usable: Vec<&super::GpuView> = node
        .gpus
        .iter()
        .filter(|g| {
            model_ok(g, &job.model) && g.memory_total >= job.memory && g.use_ != GpuUse::Foreign
        })
        .collect();
    let need = (job.gpus as usize).max(1);
    if usable.len() < need {
        return None;
    }
    if job.gpus == 0 {
        // A slice: a releasing GPU, or any usable one once jobs on it leave.
        let missing = usize::from(!usable.iter().any(|g| g.use_ == GpuUse::Releasing));
        return Some(Candidate {
            node: n,
            missing,
            victims: None,
            victim_gpus: 0,
        });
    }
    let soon = usable
        .iter()
        .filter(|g| g.use_ == GpuUse::Free || g.use_ == GpuUse::Releasing)
        .count();
    let mut missing = need.saturating_sub(soon);
    if job.exclusive {
        // The whole host must empty (exclusive jobs do not preempt).
        let busy = node
            .gpus
            .iter()
            .filter(|g| matches!(g.use_, GpuUse::Held | GpuUse::Shared(_)))
            .count();
        missing = missing.max(busy);
    }
    let victims = if missing == 0 || job.exclusive {
        None
    } else {
        preempt(node, job, missing)
    };
    let victim_gpus = victims
        .as_ref()
        .map_or(0, |v: &Vec<(String, usize)>| v.iter().map(|x| x.1).sum());
    Some(Candidate {
        node: n,
        missing,
        victims: victims.map(|v| v.into_iter().map(|x| x.0).collect()),
        victim_gpus,
    })
}

/// The fewest lower-priority preemptible jobs whose usable GPUs cover
/// `missing`: lowest priority first, then the biggest (fewer stops), then id.
fn preempt(
    node: &super::NodeView,
    job: &QueuedJob,
    missing: usize,
) -> Option<Vec<(String, usize)>> {
    let mut victims: Vec<(i32, usize, &str)> = node
        .victims
        .iter()
        .filter(|v| v.priority < job.priority)
        .filter(|v| !job.own_victims_only || v.user == job.user)
        .map(|v| {
            let usable = v
                .gpus
                .iter()
                .filter(|&&i| {
                    node.gpus.iter().any(|g| {
                        g.index == i
                            && g.use_ == GpuUse::Held
                            && model_ok(g, &job.model)
                            && g.memory_total >= job.memory
                    })
                })
                .count();
            (v.priority, usable, v.job_id.as_str())
        })
        .filter(|v| v.1 > 0)
        .collect();
    victims.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(b.2)));
    let mut chosen = Vec::new();
    let mut covered = 0;
    for (_, gpus, id) in victims {
        if covered >= missing {
            break;
        }
        covered += gpus;
        chosen.push((id.to_string(), gpus));
    }
    (covered >= missing).then_some(chosen)
}

/// Holds a reserved host's resources for the job: its free usable GPUs (up to
/// what one task needs), or everything for an exclusive job.
fn hold(work: &mut Cluster, n: usize, job: &QueuedJob) {
    if job.exclusive {
        work.reserved_hosts.insert(n);
    }
    let mut left = if job.exclusive {
        usize::MAX
    } else {
        (job.gpus as usize).max(1)
    };
    for g in 0..work.nodes[n].gpus.len() {
        if left == 0 {
            break;
        }
        let gpu = &work.nodes[n].gpus[g];
        let usable = model_ok(gpu, &job.model) && gpu.memory_total >= job.memory;
        let holdable = match gpu.use_ {
            GpuUse::Free => true,
            // A slice waits for room on a shared GPU: stop further slices there.
            GpuUse::Shared(_) | GpuUse::Releasing => job.gpus == 0,
            _ => false,
        };
        if (usable || job.exclusive) && holdable {
            work.set_use(n, g, GpuUse::Reserved);
            left -= 1;
        }
    }
}
