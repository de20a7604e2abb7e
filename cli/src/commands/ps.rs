//! `berth ps [-a] [--tasks]`: a line per job, an array's tasks folded into
//! one line (a sweep of 10,000 tasks is one line, as `squeue` folds
//! pending array tasks); `--tasks` and `-o json` list every task.

use anyhow::Result;
use berth_proto::v1::{Job, JobState, ListJobsRequest};

use crate::client::Client;
use crate::output::{ago, job_json, since, state, table, Format};

#[derive(clap::Args)]
pub struct Args {
    /// Show all jobs, finished ones too.
    #[arg(short = 'a', long)]
    all: bool,
    /// A line per array task (by default an array is one line).
    #[arg(long)]
    tasks: bool,
}

pub async fn run(client: &Client, args: Args, format: Format) -> Result<()> {
    let jobs = client
        .all_jobs(ListJobsRequest {
            all: args.all,
            ..Default::default()
        })
        .await?;
    if format == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&jobs.iter().map(job_json).collect::<Vec<_>>())?
        );
        return Ok(());
    }
    let mut rows = Vec::new();
    let mut folded: Vec<&str> = Vec::new();
    for j in &jobs {
        let array = j.spec.as_ref().is_some_and(|s| s.array.is_some()) && !j.group_id.is_empty();
        if array && !args.tasks {
            if !folded.contains(&j.group_id.as_str()) {
                folded.push(&j.group_id);
                let tasks: Vec<&Job> = jobs.iter().filter(|t| t.group_id == j.group_id).collect();
                rows.push(array_row(&tasks));
            }
            continue;
        }
        rows.push(job_row(j));
    }
    println!(
        "{}",
        table(
            &["JOB ID", "NAME", "IMAGE", "NODE", "GPUS", "CREATED", "STATUS", "PORTS"],
            rows
        )
    );
    Ok(())
}

/// One line for an array: its group id, `NAME[first-last]`, the hosts
/// and GPUs its tasks hold, and how many tasks are in each state.
fn array_row(tasks: &[&Job]) -> Vec<String> {
    let first = tasks[0];
    let spec = first.spec.clone().unwrap_or_default();
    let (lo, hi) = tasks.iter().fold((u32::MAX, 0), |(lo, hi), t| {
        (lo.min(t.task_index), hi.max(t.task_index))
    });
    let base = first
        .name
        .rsplit_once('.')
        .map_or(first.name.as_str(), |(b, _)| b);
    // Hosts and GPUs held now: finished tasks keep theirs on record only.
    let holding = |t: &&&Job| {
        matches!(
            state(t),
            JobState::Placed | JobState::Pulling | JobState::Running | JobState::Stopping
        )
    };
    let mut hosts: Vec<&str> = tasks
        .iter()
        .filter(holding)
        .map(|t| t.node.as_str())
        .collect();
    hosts.sort_unstable();
    hosts.dedup();
    let gpus: usize = tasks.iter().filter(holding).map(|t| t.gpus.len()).sum();
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for t in tasks {
        let word = match state(t) {
            JobState::Exited if t.exit_code == Some(0) => "done",
            JobState::Exited => "exited non-zero",
            other => other.word(),
        };
        match counts.iter_mut().find(|(w, _)| *w == word) {
            Some((_, n)) => *n += 1,
            None => counts.push((word, 1)),
        }
    }
    let status = counts
        .iter()
        .map(|(w, n)| format!("{n} {w}"))
        .collect::<Vec<_>>()
        .join(", ");
    vec![
        first.group_id.clone(),
        format!("{base}[{lo}-{hi}]"),
        spec.image,
        match hosts.len() {
            0 => "-".into(),
            1 => hosts[0].to_string(),
            n => format!("{n} hosts"),
        },
        if gpus == 0 {
            format!("{} each", spec.gpus)
        } else {
            gpus.to_string()
        },
        ago(tasks.iter().map(|t| t.submitted_at_ms).min().unwrap_or(0)),
        format!("{} tasks: {status}", tasks.len()),
        String::new(),
    ]
}

fn job_row(j: &Job) -> Vec<String> {
    let spec = j.spec.clone().unwrap_or_default();
    let status = match state(j) {
        JobState::Queued if j.restarts > 0 => format!("Restarting ({}x)", j.restarts),
        JobState::Queued => format!("Queued (#{})", j.queue_position),
        JobState::Placed => "Creating".into(),
        JobState::Pulling => match &j.pull {
            Some(p) if p.total_bytes > 0 => format!(
                "Pulling image {}%",
                p.done_bytes * 100 / p.total_bytes.max(1)
            ),
            _ => "Pulling image".into(),
        },
        JobState::Running if j.restarts > 0 => {
            format!("Up {} (restarted {}x)", since(j.started_at_ms), j.restarts)
        }
        JobState::Running => format!("Up {}", since(j.started_at_ms)),
        JobState::Stopping => "Stopping".into(),
        JobState::Exited => format!(
            "Exited ({}) {}",
            j.exit_code.unwrap_or(-1),
            ago(j.finished_at_ms)
        ),
        JobState::Failed => format!("Failed {}: {}", ago(j.finished_at_ms), j.message),
        JobState::Cancelled => format!("Stopped {}", ago(j.finished_at_ms)),
        JobState::Unspecified => "?".into(),
    };
    let gpus = j
        .gpus
        .iter()
        .map(|g| g.index.to_string())
        .collect::<Vec<_>>()
        .join(",");
    vec![
        j.id.clone(),
        j.name.clone(),
        spec.image,
        if j.node.is_empty() {
            "-".into()
        } else {
            j.node.clone()
        },
        if !gpus.is_empty() {
            gpus
        } else if spec.gpus_all {
            "all wanted".into()
        } else {
            format!("{} wanted", spec.gpus)
        },
        ago(j.submitted_at_ms),
        status,
        crate::output::ports_text(j),
    ]
}
