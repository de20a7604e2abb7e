//! `berth quota`: per-user limits on whole GPUs held at once.

use anyhow::Result;
use berth_proto::v1::{ListQuotasRequest, SetQuotaRequest};
use serde_json::json;

use crate::client::{status_message, Client};
use crate::output::{table, Format};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Limit USER's jobs to GPUS whole GPUs at once (their other jobs wait).
    Set { user: String, gpus: u32 },
    /// Remove USER's quota.
    Unset { user: String },
    /// Quotas with what each user holds and has queued.
    List,
}

pub async fn run(client: &Client, cmd: Command, format: Format) -> Result<()> {
    let (user, gpus) = match cmd {
        Command::Set { user, gpus } => (user, Some(gpus)),
        Command::Unset { user } => (user, None),
        Command::List => return list(client, format).await,
    };
    client
        .jobs()
        .set_quota(SetQuotaRequest { user, gpus })
        .await
        .map_err(status_message)?;
    Ok(())
}

async fn list(client: &Client, format: Format) -> Result<()> {
    let quotas = client
        .retry(|c| async move { c.jobs().list_quotas(ListQuotasRequest {}).await })
        .await?
        .quotas;
    if format == Format::Json {
        let out: Vec<_> = quotas
            .iter()
            .map(|q| json!({"user": q.user, "gpus": q.gpus, "used": q.used, "queued_jobs": q.queued_jobs}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let rows = quotas
        .iter()
        .map(|q| {
            vec![
                q.user.clone(),
                q.gpus.to_string(),
                q.used.to_string(),
                q.queued_jobs.to_string(),
            ]
        })
        .collect();
    println!("{}", table(&["USER", "GPUS", "USED", "QUEUED"], rows));
    Ok(())
}
