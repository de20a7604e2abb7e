//! `berth inspect JOB...`: the full jobs as a JSON array, like docker inspect.

use anyhow::Result;
use berth_proto::v1::GetJobRequest;

use crate::client::Client;
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
            .retry(|c| {
                let job = job.clone();
                async move { c.jobs().get_job(GetJobRequest { job }).await }
            })
            .await?
            .job
            .unwrap_or_default();
        out.push(job_json(&j));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
