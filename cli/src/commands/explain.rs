//! `berth explain JOB`: why a queued job waits — per reason, how many hosts
//! it rules out, and what the job waits for.

use anyhow::Result;
use berth_proto::v1::ExplainJobRequest;
use serde_json::json;

use crate::client::{status_message, Client};
use crate::output::{table, Format};

#[derive(clap::Args)]
pub struct Args {
    /// Job id or name (a gang's name explains the gang).
    job: String,
}

pub async fn run(client: &Client, args: Args, format: Format) -> Result<()> {
    let e = client
        .jobs()
        .explain_job(ExplainJobRequest { job: args.job })
        .await
        .map_err(status_message)?
        .into_inner();
    let job = e.job.clone().unwrap_or_default();
    if format == Format::Json {
        let out = json!({
            "job": job.id,
            "name": job.name,
            "summary": e.summary,
            "hosts": e.hosts.iter().map(|h| json!({"reason": h.reason, "hosts": h.hosts, "examples": h.examples})).collect::<Vec<_>>(),
            "queue": e.queue,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("{} ({}): {}", job.name, job.id, e.summary);
    for q in &e.queue {
        println!("  {q}");
    }
    if !e.hosts.is_empty() {
        let rows = e
            .hosts
            .iter()
            .map(|h| vec![h.hosts.to_string(), h.reason.clone(), h.examples.join(", ")])
            .collect();
        println!("{}", table(&["HOSTS", "REASON", "E.G."], rows));
    }
    Ok(())
}
