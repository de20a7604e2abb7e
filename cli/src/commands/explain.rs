//! `berth explain JOB`: why a queued job waits — per reason, how many hosts
//! it rules out, and what the job waits for.

use anyhow::Result;
use berth_proto::v1::{ExplainJobRequest, Explanation, JobSpec, SubmitJobRequest};
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
        .retry(|c| {
            let job = args.job.clone();
            async move { c.jobs().explain_job(ExplainJobRequest { job }).await }
        })
        .await?
        .explanation
        .unwrap_or_default();
    let job = e.job.clone().unwrap_or_default();
    show(&e, &format!("{} ({})", job.name, job.id), format)
}

/// `--dry-run`: the checks of a submit and where it would be placed, with
/// nothing created.
pub async fn dry_run(client: &Client, spec: JobSpec, name: String, format: Format) -> Result<()> {
    let title = if name.is_empty() {
        format!("{} (dry run)", spec.image)
    } else {
        format!("{name} (dry run)")
    };
    let r = client
        .jobs()
        .submit_job(SubmitJobRequest {
            spec: Some(spec),
            name,
            request_id: String::new(),
            dry_run: true,
        })
        .await
        .map_err(status_message)?
        .into_inner();
    show(&r.plan.unwrap_or_default(), &title, format)
}

fn show(e: &Explanation, title: &str, format: Format) -> Result<()> {
    if format == Format::Json {
        let job = e.job.clone().unwrap_or_default();
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
    println!("{title}: {}", e.summary);
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
