//! `berth logs [-f] [--tail N] JOB`.

use std::io::Write;

use anyhow::Result;
use berth_proto::v1::JobLogsRequest;
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
    /// Job id, id prefix, or name.
    job: String,
}

pub async fn run(client: &Client, args: Args) -> Result<()> {
    stream(client, &args.job, args.follow, args.tail).await
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
