//! `berth explain`: why a queued job waits, per host and per queue rule.

use std::collections::BTreeMap;

use super::fit::{image_ok, model_ok, whole_ok};
use super::host::{self, Short};
use super::per_task;
use super::{run, Constraint, GpuUse, NodeView, Outcome, QueuedJob, Snapshot};
use crate::state::norm_proto;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Explanation {
    /// One line: where it would go, or what it waits for.
    pub summary: String,
    /// Reason → hosts it rules out (each host under its first reason).
    pub hosts: Vec<(String, Vec<String>)>,
    /// Queue-level facts: rank, reservation, quota, array cap.
    pub queue: Vec<String>,
}

/// Explains queue entry `id` (a job, or a gang's group id) against
/// `snapshot`; `excluded` are registered hosts the snapshot left out, under
/// why (not reporting, cordoned).
pub fn explain(
    snapshot: &Snapshot,
    id: &str,
    excluded: &[(String, Vec<String>)],
) -> Option<Explanation> {
    let job = snapshot.queue.iter().find(|j| j.id == id)?;
    let mut by_reason: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in &snapshot.nodes {
        let reason = host_reason(n, job, snapshot).unwrap_or_else(|| "fits now".into());
        by_reason.entry(reason).or_default().push(n.name.clone());
    }
    for (reason, hosts) in excluded.iter().filter(|(_, h)| !h.is_empty()) {
        by_reason.insert(reason.clone(), hosts.clone());
    }
    let fits_now = by_reason.get("fits now").map_or(0, Vec::len);
    let tasks = job.gang.len().max(1);
    let mut hosts: Vec<(String, Vec<String>)> = by_reason.into_iter().collect();
    hosts.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));

    let ahead = snapshot
        .queue
        .iter()
        .filter(|o| o.priority > job.priority || (o.priority == job.priority && o.seq < job.seq))
        .count();
    let mut queue = vec![format!(
        "{ahead} queued job(s) rank ahead of it (higher priority, or its priority and older; fair share reorders users within a priority)"
    )];
    let (_, outcome) = run(snapshot, Some(id));
    let summary = match outcome {
        Some(Outcome::Placed(nodes)) => format!("placeable now: the next pass puts it on {}", nodes.join(", ")),
        Some(Outcome::Backoff(ms)) => format!("restarting: waits out its backoff ({:.1} s more)", ms as f64 / 1000.0),
        Some(Outcome::Reserved(reserved, victims)) => {
            queue.push(format!("holds the reservation on {}", reserved.join(", ")));
            if victims.is_empty() {
                format!(
                    "first in line: waits for GPUs held on {} to free up; jobs behind it may only backfill elsewhere",
                    reserved.join(", ")
                )
            } else {
                format!("first in line: preempting {} to start on {}", victims.join(", "), reserved.join(", "))
            }
        }
        Some(Outcome::Waiting { reserved_for: Some(holder) }) => format!(
            "it would fit, but the free GPUs it could use are reserved for higher-ranked job {holder} (backfill must not delay it)"
        ),
        Some(Outcome::Quota { held, quota }) => {
            format!("its user is at their GPU quota: {held} of {quota} GPUs held; it starts when their jobs finish")
        }
        Some(Outcome::ArrayCap(cap)) => format!("its array already runs {cap} task(s), its cap (%{cap})"),
        Some(Outcome::Waiting { reserved_for: None }) | None => {
            if fits_now >= tasks {
                "the hosts that fit it were taken by higher-ranked jobs in this pass".into()
            } else if hosts.iter().all(|(r, _)| permanent(r)) {
                "no host can run it as asked: see the reasons below; change the request or add hosts".into()
            } else {
                format!("waits for resources: {tasks} host(s) needed, {fits_now} fit now")
            }
        }
    };
    Some(Explanation {
        summary,
        hosts,
        queue,
    })
}

/// Reasons that no job finishing can change.
fn permanent(reason: &str) -> bool {
    reason.starts_with("label") || reason.starts_with("no ") || reason.starts_with("fewer than")
}

/// The first reason host `n` cannot take one task of `job` now; `None` if it can.
fn host_reason(n: &NodeView, job: &QueuedJob, snap: &Snapshot) -> Option<String> {
    if n.exclusive {
        return Some("held by an exclusive job".into());
    }
    if let Some(c) = job.constraints.iter().find(|c| !c.holds(&n.labels)) {
        return Some(match c {
            Constraint::Eq(k, v) => format!("label {k}={v} not set"),
            Constraint::Ne(k, v) => format!("label {k}={v} excluded"),
        });
    }
    if image_ok(n, job, snap).is_none() {
        return Some(if !snap.move_images {
            format!("no image {} (not moved between hosts)", job.image)
        } else if snap.image_sizes.contains_key(&job.image) {
            format!("too little free disk for image {}", job.image)
        } else {
            format!(
                "no host holds image {} (berth image load -i FILE --to HOST)",
                job.image
            )
        });
    }
    let models = n.gpus.iter().filter(|g| model_ok(g, &job.model)).count();
    let need = (job.gpus as usize).max(usize::from(job.memory > 0));
    if models < need {
        return Some(if job.model.is_empty() {
            format!("fewer than {need} GPU(s)")
        } else {
            format!("no {} GPU (or fewer than {need})", job.model)
        });
    }
    if n.gpus
        .iter()
        .filter(|g| model_ok(g, &job.model) && g.memory_total >= job.memory)
        .count()
        < need
    {
        return Some(format!("no GPU with {} of memory", bytes(job.memory)));
    }
    if let Some((p, proto)) = job
        .ports
        .iter()
        .find(|(p, proto)| n.used_ports.contains(&(*p, norm_proto(proto))))
    {
        return Some(format!("host port {p}/{} in use", norm_proto(proto)));
    }
    if job.exclusive && (n.live_jobs > 0 || n.gpus.iter().any(|g| g.use_ != GpuUse::Free)) {
        return Some("busy (the job asks for the whole host)".into());
    }
    if job.all_gpus {
        if n.gpus.is_empty() {
            return Some("no GPUs (--gpus all)".into());
        }
        if !n.gpus.iter().all(|g| whole_ok(g, job)) {
            return Some("not every GPU free (--gpus all)".into());
        }
    } else if job.gpus > 0 {
        let free = n.gpus.iter().filter(|g| whole_ok(g, job)).count();
        if free < need {
            return Some("too few free GPUs".into());
        }
    } else if job.memory > 0 {
        let room = n.gpus.iter().any(|g| match g.use_ {
            GpuUse::Free => g.memory_free >= job.memory && model_ok(g, &job.model),
            GpuUse::Shared(r) => {
                g.memory_total.saturating_sub(r) >= job.memory && model_ok(g, &job.model)
            }
            _ => false,
        });
        if !room {
            return Some(format!("no GPU with {} unreserved", bytes(job.memory)));
        }
    }
    let whole = if job.all_gpus {
        n.gpus.len()
    } else {
        job.gpus as usize
    };
    let limit = snap
        .host_quota_left
        .get(&job.user)
        .map_or(host::NO_LIMIT, |l| per_task(*l, job));
    match host::fits(job, n, whole, &snap.hosts, limit) {
        Ok(()) => None,
        Err(short) => {
            // What the job asks, not what each host has left: hosts
            // short of the same thing group under one reason.
            let (cpu, mem) = host::reservation(job, n, whole, &snap.hosts);
            Some(match short {
                Short::Cpu => format!("not enough CPU ({} asked)", cpus(cpu)),
                Short::Memory => format!("not enough memory ({} asked)", bytes(mem)),
                Short::Ports => "no free host port in the --host-ports range".into(),
                Short::Quota => "its user's CPU or memory quota has too little left".into(),
            })
        }
    }
}

/// Thousandths of a core as docker's --cpus writes them.
fn cpus(milli: u64) -> String {
    let s = format!("{:.3}", milli as f64 / 1000.0);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s} CPU")
}

pub fn bytes(b: u64) -> String {
    const G: u64 = 1 << 30;
    const M: u64 = 1 << 20;
    if b >= G {
        let n = format!("{:.1}", b as f64 / G as f64);
        format!("{}GiB", n.trim_end_matches(".0"))
    } else if b >= M {
        format!("{}MiB", b / M)
    } else {
        format!("{b}B")
    }
}
