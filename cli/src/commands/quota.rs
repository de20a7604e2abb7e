//! `berth quota`: per-user limits on whole GPUs, CPUs and memory held at once.

use anyhow::Result;
use berth_proto::v1::{ListQuotasRequest, SetQuotaRequest};
use serde_json::json;

use crate::client::{status_message, Client};
use crate::output::{table, Format};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Set USER's quota: GPUS whole GPUs, and --cpus / --memory held at
    /// once (their other jobs wait). What is left out is not limited.
    Set {
        user: String,
        gpus: Option<u32>,
        /// CPUs their jobs may hold at once (each: its --cpus, or its
        /// host's share per GPU).
        #[arg(long)]
        cpus: Option<f64>,
        /// Memory their jobs may hold at once, e.g. 256g.
        #[arg(long, value_parser = crate::spec::memory_arg)]
        memory: Option<u64>,
    },
    /// Remove USER's quota.
    Unset { user: String },
    /// Quotas with what each user holds and has queued.
    List,
}

pub async fn run(client: &Client, cmd: Command, format: Format) -> Result<()> {
    let request = match cmd {
        Command::Set {
            user,
            gpus,
            cpus,
            memory,
        } => {
            if gpus.is_none() && cpus.is_none() && memory.is_none() {
                anyhow::bail!("say what to limit: GPUS, --cpus N or --memory SIZE (berth quota unset {user} removes it)");
            }
            SetQuotaRequest {
                user,
                gpus,
                cpus,
                memory_bytes: memory,
            }
        }
        Command::Unset { user } => SetQuotaRequest {
            user,
            ..Default::default()
        },
        Command::List => return list(client, format).await,
    };
    client
        .jobs()
        .set_quota(request)
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
            .map(|q| json!({"user": q.user, "gpus": q.gpus, "used": q.used, "queued_jobs": q.queued_jobs,
                "cpus": q.cpus, "cpus_used": q.cpus_used, "memory_bytes": q.memory_bytes, "memory_used_bytes": q.memory_used_bytes}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let rows = quotas
        .iter()
        .map(|q| {
            let limit = |set: bool, text: String| if set { text } else { "-".into() };
            vec![
                q.user.clone(),
                limit(q.gpus.is_some(), q.gpus.unwrap_or(0).to_string()),
                q.used.to_string(),
                format!(
                    "{} / {}",
                    q.cpus_used,
                    limit(q.cpus > 0.0, q.cpus.to_string())
                ),
                format!(
                    "{} / {}",
                    crate::output::bytes(q.memory_used_bytes),
                    limit(q.memory_bytes > 0, crate::output::bytes(q.memory_bytes))
                ),
                q.queued_jobs.to_string(),
            ]
        })
        .collect();
    println!(
        "{}",
        table(&["USER", "GPUS", "USED", "CPUS", "MEMORY", "QUEUED"], rows)
    );
    Ok(())
}
