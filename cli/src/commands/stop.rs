//! `berth stop JOB...`: prints each job as it is asked to stop, like docker
//! (with `-o json`, the jobs as they are after the request).

use anyhow::{bail, Result};
use berth_proto::v1::CancelJobRequest;

use crate::client::Client;
use crate::output::{job_json, Format};

#[derive(clap::Args)]
pub struct Args {
    #[arg(required = true)]
    jobs: Vec<String>,
}

pub async fn run(client: &Client, args: Args, format: Format) -> Result<()> {
    let mut failed = 0;
    let mut stopped = Vec::new();
    for job in &args.jobs {
        match client
            .jobs()
            .cancel_job(CancelJobRequest { job: job.clone() })
            .await
        {
            Ok(r) if format == Format::Json => {
                let r = r.into_inner();
                if r.tasks.is_empty() {
                    stopped.extend(r.job.as_ref().map(job_json));
                } else {
                    stopped.extend(r.tasks.iter().map(job_json));
                }
            }
            Ok(_) => println!("{job}"),
            Err(e) => {
                eprintln!("berth: {job}: {}", e.message());
                failed += 1;
            }
        }
    }
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&stopped)?);
    }
    if failed > 0 {
        bail!("{failed} of {} jobs could not be stopped", args.jobs.len());
    }
    Ok(())
}
