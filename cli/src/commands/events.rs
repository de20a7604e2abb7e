//! `berth events`: the cluster's job and node events as they happen, or
//! from a revision on (the `revision` a List or Get answer carries, or the
//! REV column of an earlier `berth events`), like `kubectl get -w`.

use anyhow::Result;
use berth_proto::v1::{event, Event, WatchRequest};
use serde_json::json;

use crate::client::{status_message, Client};
use crate::output::{job_json, state, Format};

#[derive(clap::Args)]
pub struct Args {
    /// Replay what happened after this revision first (nothing missed,
    /// nothing twice); without it, only what happens from now.
    #[arg(long)]
    since: Option<u64>,
    /// Only this job's events (id or name).
    #[arg(long)]
    job: Option<String>,
    /// Only jobs of this user.
    #[arg(long)]
    user: Option<String>,
    /// Only jobs on this node, and the node's own events.
    #[arg(long)]
    node: Option<String>,
    /// Only job or node events.
    #[arg(long, value_parser = ["job", "node"])]
    kind: Option<String>,
}

pub async fn run(client: &Client, args: Args, format: Format) -> Result<()> {
    let mut stream = client
        .events()
        .watch(WatchRequest {
            job: args.job.unwrap_or_default(),
            from_revision: args.since.unwrap_or(0),
            kind: args.kind.unwrap_or_default(),
            user: args.user.unwrap_or_default(),
            node: args.node.unwrap_or_default(),
        })
        .await
        .map_err(status_message)?
        .into_inner();
    if format == Format::Table {
        println!("{:<8}  {:<24}  {:<5}  WHAT", "REV", "TIME", "KIND");
    }
    while let Some(ev) = stream.message().await.map_err(status_message)? {
        match format {
            Format::Json => println!("{}", as_json(&ev)),
            Format::Table => println!("{}", line(&ev)),
        }
    }
    Ok(())
}

fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

/// One event for people: "1234  2026-11-28T11:00:00.000Z  job  ab12cd train running on gpu1".
fn line(ev: &Event) -> String {
    let (kind, what) = match &ev.kind {
        Some(event::Kind::Job(j)) => {
            let mut what = format!("{} {} {}", j.id, j.name, state(j).word());
            if !j.node.is_empty() {
                what.push_str(&format!(" on {}", j.node));
            }
            if !j.message.is_empty() {
                what.push_str(&format!(": {}", j.message));
            }
            ("job", what)
        }
        Some(event::Kind::NodeRegistered(n)) => ("node", format!("{n} registered")),
        None => ("?", String::new()),
    };
    format!(
        "{:<8}  {:<24}  {:<5}  {what}",
        ev.index,
        time(ev.at_ms),
        kind
    )
}

/// One event for programs: one JSON object per line.
fn as_json(ev: &Event) -> serde_json::Value {
    match &ev.kind {
        Some(event::Kind::Job(j)) => {
            json!({"revision": ev.index, "at_ms": ev.at_ms, "kind": "job", "job": job_json(j)})
        }
        Some(event::Kind::NodeRegistered(n)) => {
            json!({"revision": ev.index, "at_ms": ev.at_ms, "kind": "node", "node": n})
        }
        None => json!({"revision": ev.index, "at_ms": ev.at_ms}),
    }
}
