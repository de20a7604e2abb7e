//! The pure scheduler: `schedule(&snapshot)` turns a view of the cluster and
//! the queue into a plan (placements, preemptions, one reservation). No IO, no
//! clock, no randomness: the controller builds the snapshot, proposes the
//! plan through the log, and the state machine re-checks it on apply.
//!
//! Policy, in the order it is applied:
//! - **Priority**: a higher-priority job is always considered first.
//! - **Fair share** (the rule): among jobs of one priority, the next job
//!   considered is the oldest queued job of the user who *currently holds the
//!   fewest GPU-equivalents* (a whole GPU counts 1, a shared slice its share of
//!   the GPU's memory), counting what this pass has placed already; ties go to
//!   the older job. A user with 1,000 queued jobs therefore gets one turn per
//!   GPU like everyone else, and cannot starve a user with one job.
//! - **Quotas**: a user at their whole-GPU quota waits; an array waits at its
//!   concurrency cap.
//! - **Best fit**: among hosts that can take a job, prefer one that holds its
//!   image (a host that lacks it is used only when no holder can take the job
//!   now and moving images is on), then the host with the fewest free GPUs, so
//!   partly used hosts fill first and whole hosts stay free for big jobs.
//!   Within a host, GPUs that are close (one topology group, else adjacent
//!   indexes). Slices pack onto already shared GPUs first.
//! - **Reservation and backfill** (EASY backfilling): the highest-ranked job
//!   that does not fit gets a reservation on the hosts where it is closest to
//!   fitting; their free GPUs are held for it. Jobs behind it still start
//!   (backfill), but only on resources outside the reservation, so they
//!   never delay it: its start depends only on jobs already running on its
//!   reserved hosts. Jobs that cannot fit anywhere even on an empty cluster
//!   (no such model, image nowhere) get no reservation and block nobody.
//! - **Preemption**: if that job could fit by stopping preemptible jobs of
//!   lower priority, the plan stops the fewest such jobs (they are requeued)
//!   and reserves the freed GPUs. GPUs already being released count first, so
//!   one blocked job never preempts twice.
//! - **Gangs** are placed all-or-nothing on distinct hosts.

pub mod explain;
mod fit;
pub mod host;
mod image;
mod rank;
pub use rank::{QueueKey, QueueKeys};
mod reserve;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

pub use crate::state::Constraint;
use crate::state::{GpuRef, Placement};
pub use explain::{explain, Explanation};
pub use image::{has_image, id_matches, normalize_image};

/// What the scheduler knows about one node.
/// Cloned once per pass into the working state, so its unchanging parts
/// are shared (`Arc`), not copied.
#[derive(Debug, Clone, Default)]
pub struct NodeView {
    pub name: String,
    pub labels: Arc<BTreeMap<String, String>>,
    /// Every GPU of the node, by index.
    pub gpus: Vec<GpuView>,
    /// Image references this node's daemon has (tags and ids).
    pub images: Arc<HashSet<String>>,
    /// (host port, protocol) already published by live jobs here.
    pub used_ports: HashSet<(u32, String)>,
    /// Free bytes on the Docker root's filesystem.
    pub disk_free: u64,
    /// Live jobs holding resources here (whole-host exclusivity).
    pub live_jobs: u32,
    /// A live exclusive job owns the host.
    pub exclusive: bool,
    /// Live preemptible jobs here (whole-GPU jobs only).
    pub victims: Vec<Victim>,
    /// CPU (thousandths of a core) and memory the host has (0: unknown,
    /// not counted) and what live jobs hold.
    pub millicpus: u64,
    pub memory_bytes: u64,
    pub millicpus_held: u64,
    pub memory_held: u64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct GpuView {
    pub index: u32,
    pub uuid: Arc<str>,
    /// Lowercased model name.
    pub model: Arc<str>,
    pub memory_total: u64,
    /// Total minus what the GPU reports used (foreign or our own processes).
    pub memory_free: u64,
    /// GPUs of one non-empty group are close (NVLink / one PCIe switch).
    pub group: Arc<str>,
    pub use_: GpuUse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GpuUse {
    #[default]
    Free,
    /// Held whole by a live job.
    Held,
    /// Held by a job that is stopping: free soon.
    Releasing,
    /// Shared by slice jobs that reserved this many bytes in all.
    Shared(u64),
    /// Used by processes Berth did not start.
    Foreign,
    /// Held for the reserved job of this pass.
    Reserved,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Victim {
    pub job_id: String,
    pub priority: i32,
    /// Its owner: a user's job preempts only its owner's own jobs.
    pub user: String,
    /// GPU indexes it holds.
    pub gpus: Vec<u32>,
}

/// A queued job (or a whole gang) as the scheduler sees it.
#[derive(Debug, Clone, Default)]
pub struct QueuedJob {
    /// The job's id; for a gang, its group id.
    pub id: String,
    /// Submission order (log index of the submit): older first.
    pub seq: u64,
    pub user: String,
    pub priority: i32,
    /// Whole GPUs per task; 0 with `memory` > 0 is a shared slice.
    pub gpus: u32,
    /// Per-GPU minimum free memory, or the slice size when `gpus` is 0.
    pub memory: u64,
    /// Lowercased model substring; empty for any.
    pub model: String,
    pub constraints: Vec<Constraint>,
    pub exclusive: bool,
    pub image: String,
    /// Fixed host ports (`-p 8080:80`).
    pub ports: Vec<(u32, String)>,
    /// Protocols of the host ports Berth picks per task (`-p 80`, `-P`,
    /// a host network gang's rendezvous port).
    pub pick_ports: Vec<String>,
    /// `--gpus all`: every GPU of one host (`gpus` is 0).
    pub all_gpus: bool,
    /// `--cpus` (thousandths) and `-m` (bytes) held per task; 0: the
    /// per-GPU defaults (`host::HostPolicy`).
    pub millicpus: u64,
    pub memory_bytes: u64,
    /// Gang tasks by rank (job ids); empty for a single job.
    pub gang: Vec<String>,
    /// Array group id and its concurrency cap (0 = none).
    pub array: Option<(String, u32)>,
    /// A restarting job's backoff: not placed before this (unix ms).
    pub not_before_ms: i64,
    /// May preempt only its owner's jobs (a user's job); an admin's job
    /// may preempt anyone's preemptible, lower-priority jobs.
    pub own_victims_only: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Ready nodes only. Shared with the leader's cache of unchanged nodes.
    pub nodes: Vec<Arc<NodeView>>,
    /// Queued jobs, any order: the scheduler ranks them. Shared with the
    /// controller's cache, so building a snapshot copies no job.
    pub queue: Arc<Vec<Arc<QueuedJob>>>,
    /// `queue`'s ranking keys, packed, when the caller keeps them beside it
    /// (built by the pass otherwise; ignored unless one per queued job).
    pub queue_keys: Option<Arc<QueueKeys>>,
    /// User → GPU-equivalents (in thousandths) their live jobs hold.
    pub usage: HashMap<String, u64>,
    /// User → whole GPUs their live jobs hold (for quotas).
    pub whole_held: HashMap<String, u32>,
    /// User → quota in whole GPUs.
    pub quotas: HashMap<String, u32>,
    /// User → (thousandths of a core, bytes) their CPU and memory quota
    /// has left; users without one are absent.
    pub host_quota_left: HashMap<String, (u64, u64)>,
    /// Array group → tasks holding resources now.
    pub group_live: HashMap<String, u32>,
    /// Normalised image reference → size in bytes, from any host holding it.
    pub image_sizes: HashMap<String, u64>,
    /// Whether hosts lacking an image may be chosen (the image is moved there).
    pub move_images: bool,
    /// Host ports, CPU and memory defaults (the controllers' settings).
    pub hosts: host::HostPolicy,
    /// The leader's clock (unix ms), for restart backoffs; the only time a
    /// pass sees.
    pub now_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub placements: Vec<Placement>,
    /// Jobs to stop and requeue, with the job they make room for.
    pub preemptions: Vec<(String, String)>,
    /// The job holding this pass's reservation, and its hosts.
    pub reserved: Option<(String, Vec<String>)>,
}

/// How one queued job fared in a pass (for `explain`).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Placed(Vec<String>),
    /// Got the reservation; preempting these jobs for it.
    Reserved(Vec<String>, Vec<String>),
    /// Fits nowhere now; `reservation` names the job whose reservation it
    /// could not use, when that is what stopped it.
    Waiting {
        reserved_for: Option<String>,
    },
    Quota {
        held: u32,
        quota: u32,
    },
    ArrayCap(u32),
    /// A restart waiting out its backoff.
    Backoff(i64),
}

/// What each task of `job` may hold of `left`: a gang's tasks share it.
pub fn per_task(left: (u64, u64), job: &QueuedJob) -> (u64, u64) {
    let tasks = job.gang.len().max(1) as u64;
    (left.0 / tasks, left.1 / tasks)
}

/// Places as many queued jobs as fit, by rank (see the module doc).
pub fn schedule(snapshot: &Snapshot) -> Plan {
    run(snapshot, None).0
}

/// One pass; with `trace`, also how that job fared.
fn run(snapshot: &Snapshot, trace: Option<&str>) -> (Plan, Option<Outcome>) {
    let mut work = fit::Cluster::new(&snapshot.nodes);
    let mut usage = snapshot.usage.clone();
    let mut whole = snapshot.whole_held.clone();
    let mut group_live = snapshot.group_live.clone();
    let mut host_left = snapshot.host_quota_left.clone();
    let mut plan = Plan::default();
    let mut outcome = None;
    // Shapes that found no room: resources only shrink within a pass, so the
    // same shape cannot fit later in it either; and shapes that could get no
    // reservation. Together with `cannot_fit` and the early stop below, this
    // keeps a full cluster with 100,000 queued jobs cheap to pass over.
    let mut unfit = fit::ShapeSet::default();
    let mut unreservable = fit::ShapeSet::default();
    // Once the cluster is full and the reservation is made, nothing further
    // can be placed unless some job needs no GPU or a slice still fits.
    let (mut order, facts) = rank::FairOrder::new(&snapshot.queue, snapshot.queue_keys.as_deref());
    while let Some(i) = order.next(&usage) {
        let job = &*snapshot.queue[i];
        let traced = trace == Some(job.id.as_str());
        if job.not_before_ms > snapshot.now_ms {
            if traced {
                outcome = Some(Outcome::Backoff(job.not_before_ms - snapshot.now_ms));
            }
            continue;
        }
        let tasks = job.gang.len().max(1) as u32;
        if let Some(&quota) = snapshot.quotas.get(&job.user) {
            let held = whole.get(&job.user).copied().unwrap_or(0);
            if held + job.gpus * tasks > quota {
                if traced {
                    outcome = Some(Outcome::Quota { held, quota });
                }
                continue;
            }
        }
        if let Some((group, cap)) = &job.array {
            let live = group_live.get(group).copied().unwrap_or(0);
            if *cap > 0 && live >= *cap {
                if traced {
                    outcome = Some(Outcome::ArrayCap(*cap));
                }
                continue;
            }
        }
        let shape = fit::shape_hash(job);
        // A user's CPU and memory quota bounds each task of theirs; a shape
        // is remembered as unfit only for users without one.
        let limit = host_left.get(&job.user).map(|l| per_task(*l, job));
        let found = if work.cannot_fit(job)
            || (limit.is_none() && unfit.contains(&snapshot.queue, shape, job))
        {
            None
        } else {
            work.limit = limit.unwrap_or(host::NO_LIMIT);
            let placed = work.place(job, snapshot);
            work.limit = host::NO_LIMIT;
            placed
        };
        let Some(placed) = found else {
            if limit.is_none() {
                unfit.insert(shape, i);
            }
            let reservable = !unreservable.contains(&snapshot.queue, shape, job);
            let outcome_here = if plan.reserved.is_none() && reservable {
                match reserve::reserve(&mut work, job, snapshot) {
                    Some(r) => {
                        let o = Outcome::Reserved(r.hosts.clone(), r.victims.clone());
                        plan.preemptions
                            .extend(r.victims.into_iter().map(|v| (v, job.id.clone())));
                        plan.reserved = Some((job.id.clone(), r.hosts));
                        o
                    }
                    None => {
                        unreservable.insert(shape, i);
                        Outcome::Waiting { reserved_for: None }
                    }
                }
            } else {
                let holder = plan.reserved.as_ref().map(|r| r.0.clone());
                // Costly (a trial placement): only for the job being explained.
                let blocked_by_reservation = traced && work.fits_without_reservation(job, snapshot);
                Outcome::Waiting {
                    reserved_for: holder.filter(|_| blocked_by_reservation),
                }
            };
            if traced {
                outcome = Some(outcome_here);
            }
            let full = work.max_free() == 0 && work.max_shared_room() < facts.min_slice;
            if trace.is_none() && plan.reserved.is_some() && full && !facts.gpu_free_jobs {
                break;
            }
            continue;
        };
        *usage.entry(job.user.clone()).or_default() += placed.iter().map(|p| p.share).sum::<u64>();
        if job.gpus > 0 || job.all_gpus {
            *whole.entry(job.user.clone()).or_default() +=
                placed.iter().map(|p| p.gpus.len() as u32).sum::<u32>();
        }
        if let Some((group, _)) = &job.array {
            *group_live.entry(group.clone()).or_default() += 1;
        }
        if let Some(left) = host_left.get_mut(&job.user) {
            for p in &placed {
                left.0 = left.0.saturating_sub(p.held.0);
                left.1 = left.1.saturating_sub(p.held.1);
            }
        }
        if traced {
            outcome = Some(Outcome::Placed(
                placed.iter().map(|p| p.node.clone()).collect(),
            ));
        }
        let ids: Vec<&String> = if job.gang.is_empty() {
            vec![&job.id]
        } else {
            job.gang.iter().collect()
        };
        for (id, p) in ids.into_iter().zip(placed) {
            plan.placements.push(Placement {
                job_id: id.clone(),
                node: p.node,
                gpus: p
                    .gpus
                    .into_iter()
                    .map(|(index, uuid)| GpuRef { index, uuid })
                    .collect(),
                ports: p.ports,
                millicpus: p.held.0,
                memory_bytes: p.held.1,
            });
        }
    }
    (plan, outcome)
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
