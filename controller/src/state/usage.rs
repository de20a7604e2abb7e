//! The usage ledger: what each run of a job reserved and for how long
//! (GPU-seconds, GPU memory for slices, CPUs, memory, wall time), written
//! as the run ends and kept past job retention — Slurm's accounting
//! (`sacct`, `sreport`) for Berth.
//!
//! A run is charged from its container's start to its end (exit, failure,
//! stop, preemption, a lost host), as Slurm charges from a job's start:
//! time spent placed while the image arrives is not charged. A job that
//! restarts is charged once per run.
//!
//! Runs older than `--usage-detail` are folded into sums per UTC day, user,
//! host and GPU model (`CompactUsage`), so the ledger grows with days, not
//! with jobs; a report over them is exact per day.
//!
//! Only entries of log format 5 and later charge (`State::entry_version`):
//! a version-4 controller applies the same entries without a ledger, and
//! every replica must build the same one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{is_slice, JobState, State};

pub const DAY_MS: i64 = 86_400_000;
const MIB: u64 = 1 << 20;

/// One run of a job, as it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    pub job_id: String,
    pub name: String,
    pub user: String,
    pub node: String,
    /// The GPU model it held; empty for a job without GPUs.
    pub model: String,
    /// Whole GPUs held (0 for a slice).
    pub gpus: u32,
    /// A slice's reserved GPU memory (0 for whole GPUs).
    pub gpu_memory_bytes: u64,
    pub nano_cpus: u64,
    pub memory_bytes: u64,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    /// exited, failed, cancelled, restarted, preempted.
    pub outcome: String,
    pub exit_code: Option<i32>,
}

/// Sums over runs, in integer units so every replica adds up alike.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Runs (or parts of runs, for a day) counted.
    pub runs: u64,
    pub wall_ms: u64,
    /// Whole GPUs × milliseconds.
    pub gpu_ms: u64,
    /// A slice's GPU memory in MiB × milliseconds.
    pub gpu_mib_ms: u64,
    /// CPUs reserved × milliseconds (`--cpus`; 0 when unlimited).
    pub cpu_ms: u64,
    /// Memory reserved in MiB × milliseconds (`-m`; 0 when unlimited).
    pub memory_mib_ms: u64,
}

impl Totals {
    fn add(&mut self, o: &Totals) {
        self.runs += o.runs;
        self.wall_ms += o.wall_ms;
        self.gpu_ms += o.gpu_ms;
        self.gpu_mib_ms += o.gpu_mib_ms;
        self.cpu_ms += o.cpu_ms;
        self.memory_mib_ms += o.memory_mib_ms;
    }

    /// A run spread over several days counts as a run on its first only.
    fn counted(mut self, first: bool) -> Totals {
        self.runs = u64::from(first);
        self
    }

    /// What `r` used over `ms` of its run.
    fn of(r: &UsageRecord, ms: i64) -> Totals {
        let ms = ms.max(0) as u64;
        Totals {
            runs: 1,
            wall_ms: ms,
            gpu_ms: u64::from(r.gpus) * ms,
            gpu_mib_ms: r.gpu_memory_bytes / MIB * ms,
            cpu_ms: (u128::from(r.nano_cpus) * u128::from(ms) / 1_000_000_000) as u64,
            memory_mib_ms: r.memory_bytes / MIB * ms,
        }
    }
}

/// One day's sums for a user on a host and GPU model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaySum {
    /// Start of the UTC day, Unix ms.
    pub day_ms: i64,
    pub user: String,
    pub node: String,
    pub model: String,
    pub totals: Totals,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Runs in the order they ended.
    pub runs: Vec<UsageRecord>,
    /// Older runs, summed per day (sorted by day, user, node, model).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<DaySum>,
    /// Runs that ended before this are in `days` only.
    #[serde(default)]
    pub detail_from_ms: i64,
}

impl Ledger {
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty() && self.days.is_empty() && self.detail_from_ms == 0
    }

    /// Folds the runs that ended before `before_ms` into day sums.
    pub(super) fn compact(&mut self, before_ms: i64) -> usize {
        let (old, keep): (Vec<UsageRecord>, Vec<UsageRecord>) = std::mem::take(&mut self.runs)
            .into_iter()
            .partition(|r| r.finished_at_ms < before_ms);
        self.runs = keep;
        self.detail_from_ms = self.detail_from_ms.max(before_ms);
        if old.is_empty() {
            return 0;
        }
        let mut sums: BTreeMap<(i64, String, String, String), Totals> =
            std::mem::take(&mut self.days)
                .into_iter()
                .map(|d| ((d.day_ms, d.user, d.node, d.model), d.totals))
                .collect();
        for r in &old {
            for (i, (day, ms)) in split_days(r.started_at_ms, r.finished_at_ms)
                .into_iter()
                .enumerate()
            {
                let key = (day, r.user.clone(), r.node.clone(), r.model.clone());
                sums.entry(key)
                    .or_default()
                    .add(&Totals::of(r, ms).counted(i == 0));
            }
        }
        self.days = sums
            .into_iter()
            .map(|((day_ms, user, node, model), totals)| DaySum {
                day_ms,
                user,
                node,
                model,
                totals,
            })
            .collect();
        old.len()
    }
}

/// [start, end) cut at UTC midnights: (day start, ms in that day).
pub fn split_days(start: i64, end: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut at = start;
    while at < end {
        let day = at.div_euclid(DAY_MS) * DAY_MS;
        let upto = end.min(day + DAY_MS);
        out.push((day, upto - at));
        at = upto;
    }
    out
}

impl State {
    /// Charges job `id`'s run, ending at `at_ms` with `outcome`, before it
    /// releases what it held. A run that never started costs nothing.
    pub(super) fn charge(
        &mut self,
        id: &str,
        at_ms: i64,
        outcome: JobState,
        exit_code: Option<i32>,
    ) {
        self.charge_as(id, at_ms, outcome.word(), exit_code);
    }

    pub(super) fn charge_as(
        &mut self,
        id: &str,
        at_ms: i64,
        outcome: &str,
        exit_code: Option<i32>,
    ) {
        if self.entry_version < 5 {
            return;
        }
        if let Some(record) = self.run_of(id, at_ms, outcome, exit_code) {
            self.usage.runs.push(record);
        }
    }

    /// Job `id`'s current run as it would be charged ending at `at_ms`;
    /// `None` when it has not started.
    fn run_of(
        &self,
        id: &str,
        at_ms: i64,
        outcome: &str,
        exit_code: Option<i32>,
    ) -> Option<UsageRecord> {
        let job = self.jobs.get(id)?;
        if job.started_at_ms <= 0 {
            return None;
        }
        let node = job.node.clone().unwrap_or_default();
        let model = job
            .gpus
            .first()
            .and_then(|g| {
                self.nodes
                    .get(&node)?
                    .gpus
                    .iter()
                    .find(|i| i.uuid == g.uuid)
                    .map(|i| i.model.clone())
            })
            .unwrap_or_default();
        let slice = is_slice(&job.spec);
        Some(UsageRecord {
            job_id: job.id.clone(),
            name: job.name.clone(),
            user: job.spec.user.clone(),
            node,
            model,
            gpus: if slice { 0 } else { job.gpus.len() as u32 },
            gpu_memory_bytes: if slice { job.spec.gpu_memory_bytes } else { 0 },
            nano_cpus: job.spec.nano_cpus,
            memory_bytes: job.spec.memory_bytes,
            started_at_ms: job.started_at_ms,
            finished_at_ms: at_ms.max(job.started_at_ms),
            outcome: outcome.to_string(),
            exit_code,
        })
    }

    /// The runs going on now, charged until `now_ms`: what a report adds
    /// to the ledger (running and stopping jobs).
    pub fn live_runs(&self, now_ms: i64) -> Vec<UsageRecord> {
        self.jobs
            .values()
            .filter(|j| matches!(j.state, JobState::Running | JobState::Stopping))
            .filter_map(|j| self.run_of(&j.id, now_ms, "running", None))
            .collect()
    }
}

/// What a report groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    User,
    Day,
    Node,
    Model,
    Job,
}

/// One line of a report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row {
    pub key: String,
    pub totals: Totals,
}

/// Usage within [since_ms, until_ms) (0: open), of `user` when given,
/// grouped `by`: the ledger's runs and day sums, plus `live` runs so far
/// (running jobs, charged until `now_ms`). Runs are clipped to the window;
/// a day sum counts when its day starts in it.
pub fn report(
    ledger: &Ledger,
    live: &[UsageRecord],
    user: Option<&str>,
    since_ms: i64,
    until_ms: i64,
    by: By,
) -> Vec<Row> {
    let until = if until_ms > 0 { until_ms } else { i64::MAX };
    let mine = |u: &str| user.is_none_or(|w| w == u);
    let mut rows: BTreeMap<String, Totals> = BTreeMap::new();
    for d in &ledger.days {
        if !mine(&d.user) || d.day_ms < since_ms || d.day_ms >= until {
            continue;
        }
        let key = match by {
            By::User => d.user.clone(),
            By::Day => day_text(d.day_ms),
            By::Node => d.node.clone(),
            By::Model => model_text(&d.model),
            By::Job => "(runs summed by day)".into(),
        };
        rows.entry(key).or_default().add(&d.totals);
    }
    for r in ledger.runs.iter().chain(live) {
        if !mine(&r.user) {
            continue;
        }
        if r.finished_at_ms < since_ms || r.started_at_ms >= until {
            continue;
        }
        let (from, to) = (r.started_at_ms.max(since_ms), r.finished_at_ms.min(until));
        match by {
            By::Day => {
                for (i, (day, ms)) in split_days(from, to).into_iter().enumerate() {
                    rows.entry(day_text(day))
                        .or_default()
                        .add(&Totals::of(r, ms).counted(i == 0));
                }
            }
            _ => {
                let key = match by {
                    By::User => r.user.clone(),
                    By::Node => r.node.clone(),
                    By::Model => model_text(&r.model),
                    _ => format!("{} {}", r.job_id, r.name),
                };
                rows.entry(key).or_default().add(&Totals::of(r, to - from));
            }
        }
    }
    rows.into_iter()
        .map(|(key, totals)| Row { key, totals })
        .collect()
}

/// GPU-milliseconds per user per UTC day from `since_ms` on, in one pass
/// over the ledger (the dashboard's chart: a report per user would walk
/// the ledger once per user, under the state lock).
pub fn gpu_ms_by_user_day(
    ledger: &Ledger,
    live: &[UsageRecord],
    since_ms: i64,
) -> BTreeMap<String, BTreeMap<i64, u64>> {
    let mut out: BTreeMap<String, BTreeMap<i64, u64>> = BTreeMap::new();
    for d in ledger.days.iter().filter(|d| d.day_ms >= since_ms) {
        *out.entry(d.user.clone())
            .or_default()
            .entry(d.day_ms)
            .or_default() += d.totals.gpu_ms;
    }
    for r in ledger
        .runs
        .iter()
        .chain(live)
        .filter(|r| r.finished_at_ms >= since_ms)
    {
        for (day, ms) in split_days(r.started_at_ms.max(since_ms), r.finished_at_ms) {
            *out.entry(r.user.clone())
                .or_default()
                .entry(day)
                .or_default() += u64::from(r.gpus) * ms.max(0) as u64;
        }
    }
    out
}

fn model_text(m: &str) -> String {
    if m.is_empty() {
        "(no GPU)".into()
    } else {
        m.to_string()
    }
}

/// `YYYY-MM-DD` of a UTC day start (civil from days, Howard Hinnant's).
pub fn day_text(day_ms: i64) -> String {
    let z = day_ms.div_euclid(DAY_MS) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
#[path = "usage_tests.rs"]
mod tests;
