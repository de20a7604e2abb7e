//! `berth wait JOB`: blocks until the job ends, prints its exit code (as
//! `docker wait` does) and exits with it, so pipelines can branch on it.

use anyhow::Result;
use berth_proto::v1::WaitJobRequest;

use crate::client::{status_message, Client};
use crate::output::{job_json, Format};

#[derive(clap::Args)]
pub struct Args {
    /// Job id or name, or a gang's / array's id or name (waits for every task).
    job: String,
}

pub async fn run(client: &Client, args: Args, format: Format) -> Result<i32> {
    let done = client
        .jobs()
        .wait_job(WaitJobRequest { job: args.job })
        .await
        .map_err(status_message)?
        .into_inner();
    match format {
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "exit_code": done.exit_code,
                "job": job_json(&done.job.unwrap_or_default()),
                "tasks": done.tasks.iter().map(job_json).collect::<Vec<_>>(),
            })
        ),
        Format::Table => println!("{}", done.exit_code),
    }
    Ok(if done.exit_code < 0 {
        125
    } else {
        done.exit_code
    })
}
