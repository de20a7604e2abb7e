//! `berth ps [-a]`.

use anyhow::Result;
use berth_proto::v1::{JobState, ListJobsRequest};

use crate::client::Client;
use crate::output::{ago, job_json, since, state, table, Format};

#[derive(clap::Args)]
pub struct Args {
    /// Show all jobs, finished ones too.
    #[arg(short = 'a', long)]
    all: bool,
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
    let rows = jobs
        .iter()
        .map(|j| {
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
                if gpus.is_empty() {
                    format!("{} wanted", spec.gpus)
                } else {
                    gpus
                },
                ago(j.submitted_at_ms),
                status,
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &["JOB ID", "NAME", "IMAGE", "NODE", "GPUS", "CREATED", "STATUS"],
            rows
        )
    );
    Ok(())
}
