//! `berth node cordon|uncordon|drain|rm HOST`: an admin takes a host out of
//! scheduling, empties it for maintenance, or forgets a dead one. The
//! controller checks the caller is an admin; nothing here decides that.

use std::time::Duration;

use anyhow::{bail, Result};
use berth_proto::v1::{
    CordonNodeRequest, DrainNodeRequest, ListNodesRequest, Node, RemoveNodeRequest,
};
use serde_json::json;

use crate::client::{status_message, Client};
use crate::output::Format;

#[derive(clap::Subcommand)]
pub enum Command {
    /// No new jobs on HOST; what runs there keeps running.
    Cordon { host: String },
    /// Undo a cordon or a drain: HOST takes jobs again.
    Uncordon { host: String },
    /// Cordon HOST, then at the deadline stop what still runs there: jobs
    /// with a restart policy run again elsewhere, the others end. Waits
    /// (showing what is left) until HOST is empty unless -d.
    Drain {
        host: String,
        /// How long its jobs may still run, e.g. 30m (default 1h).
        #[arg(long)]
        deadline: Option<humantime::Duration>,
        /// Stop everything there now (a deadline of 0).
        #[arg(long, conflicts_with = "deadline")]
        force: bool,
        /// Return at once instead of waiting for the host to empty.
        #[arg(short, long)]
        detach: bool,
    },
    /// Forget HOST (a dead host). Refused while its agent reports or jobs
    /// hold resources there, unless --force (then they fail, and those with
    /// a restart policy run again elsewhere).
    Rm {
        host: String,
        #[arg(long)]
        force: bool,
    },
}

pub async fn run(client: &Client, cmd: Command, format: Format) -> Result<()> {
    let mut nodes = client.nodes();
    let node = match cmd {
        Command::Cordon { host } => {
            nodes
                .cordon_node(CordonNodeRequest {
                    node: host,
                    cordon: true,
                })
                .await
                .map_err(status_message)?
                .into_inner()
                .node
        }
        Command::Uncordon { host } => {
            nodes
                .cordon_node(CordonNodeRequest {
                    node: host,
                    cordon: false,
                })
                .await
                .map_err(status_message)?
                .into_inner()
                .node
        }
        Command::Drain {
            host,
            deadline,
            force,
            detach,
        } => {
            let seconds = deadline.map_or(0, |d| d.as_secs());
            if deadline.is_some() && seconds == 0 {
                bail!("--deadline 0 stops everything now: say --force");
            }
            let node = nodes
                .drain_node(DrainNodeRequest {
                    node: host.clone(),
                    deadline_seconds: seconds,
                    force,
                })
                .await
                .map_err(status_message)?
                .into_inner()
                .node;
            if !detach && format == Format::Table {
                if let Some(n) = &node {
                    println!("{}", describe(n));
                }
                return follow(client, &host).await;
            }
            node
        }
        Command::Rm { host, force } => {
            let failed = nodes
                .remove_node(RemoveNodeRequest {
                    node: host.clone(),
                    force,
                })
                .await
                .map_err(status_message)?
                .into_inner()
                .failed_jobs;
            match format {
                Format::Json => println!("{}", json!({"removed": host, "failed_jobs": failed})),
                Format::Table if failed.is_empty() => println!("removed {host}"),
                Format::Table => println!(
                    "removed {host}; its jobs failed (restart policies run them elsewhere): {}",
                    failed.join(", ")
                ),
            }
            return Ok(());
        }
    };
    let Some(n) = node else {
        bail!("the controller answered without the node");
    };
    match format {
        Format::Json => println!(
            "{}",
            json!({"name": n.name, "cordoned": n.cordoned, "draining": n.draining,
                   "drain_deadline_ms": n.drain_deadline_ms, "live_jobs": n.live_jobs})
        ),
        Format::Table => println!("{}", describe(&n)),
    }
    Ok(())
}

/// "gpu1: draining, 2 jobs left, stopped at 14:03:00 UTC".
pub fn describe(n: &Node) -> String {
    let mut s = format!("{}: {}", n.name, schedulable(n));
    if n.draining || n.cordoned {
        s.push_str(&format!(", {} job(s) still there", n.live_jobs));
    }
    if n.draining && n.live_jobs > 0 {
        s.push_str(&format!(
            ", what remains stops {}",
            crate::output::until(n.drain_deadline_ms)
        ));
    }
    s
}

/// `cordoned`, `draining`, `drained` (draining and empty) or `schedulable`.
pub fn schedulable(n: &Node) -> &'static str {
    match (n.draining, n.cordoned, n.live_jobs) {
        (true, _, 0) => "drained",
        (true, _, _) => "draining",
        (false, true, _) => "cordoned",
        _ => "schedulable",
    }
}

/// Prints what is left on `host` as it changes, until nothing is.
async fn follow(client: &Client, host: &str) -> Result<()> {
    let mut last = None;
    loop {
        let nodes = client
            .nodes()
            .list_nodes(ListNodesRequest {})
            .await
            .map_err(status_message)?
            .into_inner()
            .nodes;
        let Some(n) = nodes.into_iter().find(|n| n.name == host) else {
            bail!("{host} is no longer a node (removed?)");
        };
        if !n.draining {
            println!("{host}: the drain was cancelled (uncordoned)");
            return Ok(());
        }
        if last != Some(n.live_jobs) {
            if n.live_jobs == 0 {
                println!("{host}: drained; `berth node uncordon {host}` when it is back");
                return Ok(());
            }
            println!("{}", describe(&n));
            last = Some(n.live_jobs);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
