//! `berth stop JOB...`: prints each job as it is asked to stop, like docker.

use anyhow::{bail, Result};
use berth_proto::v1::CancelJobRequest;

use crate::client::Client;

#[derive(clap::Args)]
pub struct Args {
    #[arg(required = true)]
    jobs: Vec<String>,
}

pub async fn run(client: &Client, args: Args) -> Result<()> {
    let mut failed = 0;
    for job in &args.jobs {
        match client
            .jobs()
            .cancel_job(CancelJobRequest { job: job.clone() })
            .await
        {
            Ok(_) => println!("{job}"),
            Err(e) => {
                eprintln!("berth: {job}: {}", e.message());
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} jobs could not be stopped", args.jobs.len());
    }
    Ok(())
}
