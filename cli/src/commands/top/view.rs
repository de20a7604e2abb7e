//! What `berth top` shows, computed from one snapshot of the cluster: a
//! line per GPU with who holds it, each user's share, and the queue.
//! Pure, so sorting and filtering are tested without a terminal.

use berth_proto::v1::{Job, JobState, Node, NodeStatus};

/// The cluster as last read: nodes (with live GPU figures) and the jobs
/// that are not finished.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub nodes: Vec<Node>,
    pub jobs: Vec<Job>,
    /// The revision the listing was read at (events resume from it).
    pub revision: u64,
    pub at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    Host,
    Util,
    Memory,
    User,
}

impl Sort {
    pub fn next(self) -> Sort {
        match self {
            Sort::Host => Sort::Util,
            Sort::Util => Sort::Memory,
            Sort::Memory => Sort::User,
            Sort::User => Sort::Host,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Sort::Host => "host",
            Sort::Util => "util",
            Sort::Memory => "memory",
            Sort::User => "user",
        }
    }
}

/// Only these user's jobs and this host's GPUs (either may be unset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub user: Option<String>,
    pub host: Option<String>,
}

impl Filter {
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(u) = &self.user {
            parts.push(format!("user={u}"));
        }
        if let Some(h) = &self.host {
            parts.push(format!("host={h}"));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(" ")
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuLine {
    pub host: String,
    pub up: bool,
    pub index: u32,
    pub model: String,
    pub util_percent: u32,
    pub mem_used: u64,
    pub mem_total: u64,
    pub temp_c: u32,
    pub power_w: u32,
    /// "NAME (id)" of each job holding it; empty when free.
    pub jobs: Vec<String>,
    pub users: Vec<String>,
    /// "pid NAME" of processes Berth did not start.
    pub foreign: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserLine {
    pub user: String,
    /// Whole GPUs, plus slices as their share of the GPU's memory.
    pub gpus: f64,
    pub running: u32,
    pub queued: u32,
    /// `gpus` over every GPU of the hosts that are up.
    pub share: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueLine {
    pub id: String,
    pub name: String,
    pub user: String,
    pub gpus: String,
    pub waiting_s: i64,
    pub message: String,
}

fn job_state(j: &Job) -> JobState {
    JobState::try_from(j.state).unwrap_or(JobState::Unspecified)
}

pub fn gpu_lines(s: &Snapshot, filter: &Filter, sort: Sort) -> Vec<GpuLine> {
    let job = |id: &str| s.jobs.iter().find(|j| j.id == id);
    let mut lines: Vec<GpuLine> = s
        .nodes
        .iter()
        .filter(|n| filter.host.as_ref().is_none_or(|h| &n.name == h))
        .flat_map(|n| {
            let up = n.status == NodeStatus::Ready as i32;
            n.gpus.iter().map(move |g| {
                let ids: Vec<&str> = std::iter::once(g.job_id.as_str())
                    .filter(|id| !id.is_empty())
                    .chain(g.slices.iter().map(|sl| sl.job_id.as_str()))
                    .collect();
                let holders: Vec<(String, String)> = ids
                    .iter()
                    .map(|id| match job(id) {
                        Some(j) => (
                            format!("{} ({})", j.name, &j.id[..j.id.len().min(12)]),
                            j.spec
                                .as_ref()
                                .map(|sp| sp.user.clone())
                                .unwrap_or_default(),
                        ),
                        None => (id.to_string(), String::new()),
                    })
                    .collect();
                GpuLine {
                    host: n.name.clone(),
                    up,
                    index: g.index,
                    model: g.model.clone(),
                    util_percent: g.utilization_percent,
                    mem_used: g.memory_used_bytes,
                    mem_total: g.memory_total_bytes,
                    temp_c: g.temperature_celsius,
                    power_w: g.power_milliwatts / 1000,
                    jobs: holders.iter().map(|h| h.0.clone()).collect(),
                    users: holders
                        .into_iter()
                        .map(|h| h.1)
                        .filter(|u| !u.is_empty())
                        .collect(),
                    foreign: g
                        .foreign_processes
                        .iter()
                        .map(|p| format!("{} {}", p.pid, p.name))
                        .collect(),
                }
            })
        })
        .filter(|l| filter.user.as_ref().is_none_or(|u| l.users.contains(u)))
        .collect();
    match sort {
        Sort::Host => lines.sort_by(|a, b| (&a.host, a.index).cmp(&(&b.host, b.index))),
        Sort::Util => lines.sort_by(|a, b| {
            b.util_percent
                .cmp(&a.util_percent)
                .then(a.host.cmp(&b.host))
        }),
        Sort::Memory => lines.sort_by(|a, b| b.mem_used.cmp(&a.mem_used).then(a.host.cmp(&b.host))),
        Sort::User => lines.sort_by(|a, b| {
            // Free GPUs last.
            (a.users.is_empty(), a.users.first(), &a.host, a.index).cmp(&(
                b.users.is_empty(),
                b.users.first(),
                &b.host,
                b.index,
            ))
        }),
    }
    lines
}

pub fn users(s: &Snapshot) -> Vec<UserLine> {
    let total: f64 = s
        .nodes
        .iter()
        .filter(|n| n.status == NodeStatus::Ready as i32)
        .map(|n| n.gpus.len() as f64)
        .sum();
    let mut out: std::collections::BTreeMap<String, UserLine> = Default::default();
    for j in &s.jobs {
        let spec = j.spec.clone().unwrap_or_default();
        let line = out.entry(spec.user.clone()).or_insert_with(|| UserLine {
            user: spec.user.clone(),
            ..UserLine::default()
        });
        match job_state(j) {
            JobState::Queued => line.queued += 1,
            JobState::Placed | JobState::Pulling | JobState::Running | JobState::Stopping => {
                line.running += 1;
                line.gpus += if spec.gpus == 0 && spec.gpu_memory_bytes > 0 {
                    slice_share(s, j, spec.gpu_memory_bytes)
                } else {
                    j.gpus.len() as f64
                };
            }
            _ => {}
        }
    }
    let mut lines: Vec<UserLine> = out
        .into_values()
        .map(|mut l| {
            l.share = if total > 0.0 { l.gpus / total } else { 0.0 };
            l
        })
        .collect();
    lines.sort_by(|a, b| b.gpus.total_cmp(&a.gpus).then(a.user.cmp(&b.user)));
    lines
}

/// A slice's share of its GPU, by memory.
fn slice_share(s: &Snapshot, j: &Job, bytes: u64) -> f64 {
    let total = j
        .gpus
        .first()
        .and_then(|r| {
            s.nodes
                .iter()
                .flat_map(|n| &n.gpus)
                .find(|g| g.uuid == r.uuid)
                .map(|g| g.memory_total_bytes)
        })
        .unwrap_or(0);
    if total == 0 {
        0.0
    } else {
        bytes as f64 / total as f64
    }
}

pub fn queue(s: &Snapshot, filter: &Filter) -> Vec<QueueLine> {
    let mut q: Vec<&Job> = s
        .jobs
        .iter()
        .filter(|j| job_state(j) == JobState::Queued)
        .filter(|j| {
            filter
                .user
                .as_ref()
                .is_none_or(|u| j.spec.as_ref().is_some_and(|sp| &sp.user == u))
        })
        .collect();
    q.sort_by_key(|j| (j.queue_position, j.submitted_at_ms));
    q.into_iter()
        .map(|j| {
            let spec = j.spec.clone().unwrap_or_default();
            QueueLine {
                id: j.id[..j.id.len().min(12)].to_string(),
                name: j.name.clone(),
                user: spec.user.clone(),
                gpus: if spec.gpus == 0 && spec.gpu_memory_bytes > 0 {
                    format!("{}G slice", spec.gpu_memory_bytes >> 30)
                } else {
                    format!("{}", spec.gpus * spec.nodes.max(1))
                },
                waiting_s: ((s.at_ms - j.submitted_at_ms) / 1000).max(0),
                message: j.message.clone(),
            }
        })
        .collect()
}

/// A bar of `width` cells, `percent` full.
pub fn bar(percent: u32, width: usize) -> String {
    let full = (percent.min(100) as usize * width + 50) / 100;
    format!("{}{}", "█".repeat(full), "·".repeat(width - full))
}

fn gib(b: u64) -> String {
    format!("{:.0}G", b as f64 / (1u64 << 30) as f64)
}

pub fn mem_text(l: &GpuLine) -> String {
    format!("{}/{}", gib(l.mem_used), gib(l.mem_total))
}

pub fn mem_percent(l: &GpuLine) -> u32 {
    (l.mem_used * 100).checked_div(l.mem_total).unwrap_or(0) as u32
}

/// The plain text `berth top` prints off a terminal: a time line, then a
/// line per GPU, then the users and the queue.
pub fn plain(s: &Snapshot, filter: &Filter, sort: Sort) -> String {
    let when = chrono::DateTime::from_timestamp_millis(s.at_ms)
        .map(|t| t.format("%H:%M:%S").to_string())
        .unwrap_or_default();
    let mut out = format!("-- {when} revision {} --\n", s.revision);
    for l in gpu_lines(s, filter, sort) {
        out += &format!(
            "{} gpu{} {} util {}% mem {} {}C {}W {} {}{}\n",
            l.host,
            l.index,
            if l.up { "up" } else { "DOWN" },
            l.util_percent,
            mem_text(&l),
            l.temp_c,
            l.power_w,
            if l.jobs.is_empty() {
                "free".to_string()
            } else {
                l.jobs.join(",")
            },
            l.users.join(","),
            if l.foreign.is_empty() {
                String::new()
            } else {
                format!(" foreign: {}", l.foreign.join(", "))
            },
        );
    }
    for u in users(s) {
        out += &format!(
            "user {} gpus {:.2} ({:.0}%) running {} queued {}\n",
            u.user,
            u.gpus,
            u.share * 100.0,
            u.running,
            u.queued
        );
    }
    for q in queue(s, filter) {
        out += &format!(
            "queued {} {} {} gpus {} waiting {}s {}\n",
            q.id, q.name, q.user, q.gpus, q.waiting_s, q.message
        );
    }
    out
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
