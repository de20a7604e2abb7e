//! `berth logs [-f] [--tail N] JOB`; for a gang or an array, every task's
//! output, each line prefixed with its rank as `srun --label` does.

use std::io::Write;

use anyhow::Result;
use berth_proto::v1::{Job, JobLogsRequest, ListJobsRequest};
use futures::StreamExt;

use crate::client::{status_message, Client};

#[derive(clap::Args)]
pub struct Args {
    /// Follow the output until the job ends: through its restarts (each a
    /// new container, perhaps on another host), as docker logs -f does
    /// through a restarting container's.
    #[arg(short = 'f', long)]
    follow: bool,
    /// Only the last N lines.
    #[arg(long, short = 'n', default_value_t = 0)]
    tail: u32,
    /// Job id, id prefix, or name; or a gang's or array's id or name (every
    /// task's output, each line prefixed with its rank).
    job: String,
}

pub async fn run(client: &Client, args: Args) -> Result<()> {
    if let Some(tasks) = group_tasks(client, &args.job).await? {
        labelled(client, &tasks, args.follow, args.tail).await;
        return Ok(());
    }
    stream(client, &args.job, args.follow, args.tail).await
}

/// The tasks of the gang or array `reference` names, by rank; `None` when
/// it names no group (then it is a job).
pub async fn group_tasks(client: &Client, reference: &str) -> Result<Option<Vec<Job>>> {
    let mut tasks = client
        .all_jobs(ListJobsRequest {
            all: true,
            group: reference.to_string(),
            ..Default::default()
        })
        .await?;
    // Tasks of the group named, whatever a server that ignores the filter
    // sent back: its id, or tasks named NAME.RANK.
    tasks.retain(|t| {
        !t.group_id.is_empty()
            && (t.group_id == reference || t.name == format!("{reference}.{}", t.task_index))
    });
    let group = tasks
        .first()
        .map(|t| t.group_id.clone())
        .unwrap_or_default();
    tasks.retain(|t| t.group_id == group);
    if tasks.is_empty() {
        return Ok(None);
    }
    tasks.sort_by_key(|t| t.task_index);
    Ok(Some(tasks))
}

/// Every task's output at once, each line prefixed with the task's rank
/// (or array index), right-aligned as `srun --label` does: "0: ...". A
/// task without output (never started) says why on stderr, once.
pub async fn labelled(client: &Client, tasks: &[Job], follow: bool, tail: u32) {
    let width = tasks
        .iter()
        .map(|t| t.task_index.to_string().len())
        .max()
        .unwrap_or(1);
    let streams = tasks.iter().map(|t| async move {
        let label = format!("{:>width$}: ", t.task_index);
        let req = JobLogsRequest {
            job: t.id.clone(),
            follow,
            tail,
        };
        let mut logs = match client.jobs().job_logs(req).await {
            Ok(s) => s.into_inner(),
            Err(e) => {
                eprintln!("{label}berth: {}", e.message());
                return;
            }
        };
        let mut pending: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        while let Some(Ok(chunk)) = logs.next().await {
            let err = usize::from(chunk.stream == 2);
            pending[err].extend_from_slice(&chunk.data);
            // Whole lines only: a line is never split by another task's.
            while let Some(end) = pending[err].iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending[err].drain(..=end).collect();
                write_line(err == 1, &label, &line);
            }
        }
        for (err, rest) in pending.iter().enumerate() {
            if !rest.is_empty() {
                let mut line = rest.clone();
                line.push(b'\n');
                write_line(err == 1, &label, &line);
            }
        }
    });
    futures::future::join_all(streams).await;
}

fn write_line(stderr: bool, label: &str, line: &[u8]) {
    let _ = if stderr {
        let mut err = std::io::stderr().lock();
        err.write_all(label.as_bytes())
            .and_then(|_| err.write_all(line))
            .and_then(|_| err.flush())
    } else {
        let mut out = std::io::stdout().lock();
        out.write_all(label.as_bytes())
            .and_then(|_| out.write_all(line))
            .and_then(|_| out.flush())
    };
}

/// Copies a job's output to our stdout/stderr, stream for stream. On a
/// terminal, a restart is marked where the next attempt's output begins.
pub async fn stream(client: &Client, job: &str, follow: bool, tail: u32) -> Result<()> {
    let mut logs = client
        .jobs()
        .job_logs(JobLogsRequest {
            job: job.to_string(),
            follow,
            tail,
        })
        .await
        .map_err(status_message)?
        .into_inner();
    let mark = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut attempt = None;
    while let Some(chunk) = logs.next().await {
        let chunk = chunk.map_err(status_message)?;
        if mark && attempt.is_some_and(|a| a != chunk.attempt) {
            eprintln!("berth: -- restarted (attempt {}) --", chunk.attempt);
        }
        attempt = Some(chunk.attempt);
        if chunk.stream == 2 {
            let mut err = std::io::stderr().lock();
            err.write_all(&chunk.data)?;
            err.flush()?;
        } else {
            let mut out = std::io::stdout().lock();
            out.write_all(&chunk.data)?;
            out.flush()?;
        }
    }
    Ok(())
}
