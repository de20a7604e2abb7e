//! `berth inspect JOB...`: the full jobs as a JSON array, like docker inspect.

use anyhow::Result;
use berth_proto::v1::GetJobRequest;

use crate::client::{status_message, Client};
use crate::output::job_json;

#[derive(clap::Args)]
pub struct Args {
    #[arg(required = true)]
    jobs: Vec<String>,
}

pub async fn run(client: &Client, args: Args) -> Result<()> {
    let mut out = Vec::new();
    for job in args.jobs {
        let j = client
            .jobs()
            .get_job(GetJobRequest { job })
            .await
            .map_err(status_message)?
            .into_inner()
            .job
            .unwrap_or_default();
        out.push(job_json(&j));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
