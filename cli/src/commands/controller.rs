//! `berth controller list`: every controller's own view of itself — role,
//! term, commit and applied index — so an operator sees a lagging or cut-off
//! member at a glance.

use std::time::Duration;

use anyhow::{anyhow, Result};
use berth_proto::v1::controller_service_client::ControllerServiceClient;
use berth_proto::v1::{
    AddMemberRequest, ListMembersRequest, Member, Membership, RemoveMemberRequest,
    TransferLeaderRequest,
};

use crate::client::status_message;
use berth_proto::connect::Authed;
use serde_json::json;

use crate::config::Settings;

use crate::output::{table, Format};

#[derive(clap::Subcommand)]
pub enum Command {
    /// List the controllers with their raft role, term, commit and applied index.
    List,
    /// Add a controller (started with --join) as a learner, then as a voter once caught up.
    Add {
        /// Its id (unused by any member).
        id: u64,
        /// Its address, HOST:PORT. (Not named `addr`: that is the global --addr.)
        #[arg(value_name = "ADDR")]
        address: String,
    },
    /// Remove a controller from the cluster.
    Remove { id: u64 },
    /// Hand leadership to controller ID (default: the most up-to-date
    /// follower) before maintenance, with no election (admins).
    TransferLeader { id: Option<u64> },
}

pub async fn run(settings: &Settings, command: Command, format: Format) -> Result<()> {
    match command {
        Command::List => list(settings, format).await,
        Command::Add { id, address } => {
            let mut c = leader(settings).await?;
            c.add_member(AddMemberRequest { id, addr: address })
                .await
                .map_err(status_message)?;
            println!("controller {id} added");
            list(settings, format).await
        }
        Command::TransferLeader { id } => {
            let mut c = leader(settings).await?;
            let r = c
                .transfer_leader(TransferLeaderRequest {
                    id: id.unwrap_or(0),
                })
                .await
                .map_err(status_message)?
                .into_inner();
            if format == Format::Json {
                println!(
                    "{}",
                    json!({"leader_id": r.leader_id, "took_ms": r.took_ms})
                );
            } else {
                println!("controller {} leads now ({} ms)", r.leader_id, r.took_ms);
            }
            Ok(())
        }
        Command::Remove { id } => {
            let mut c = leader(settings).await?;
            c.remove_member(RemoveMemberRequest { id })
                .await
                .map_err(status_message)?;
            println!("controller {id} removed");
            Ok(())
        }
    }
}

async fn leader(settings: &Settings) -> Result<ControllerServiceClient<Authed>> {
    Ok(crate::client::Client::connect(settings)
        .await?
        .controllers())
}

/// One controller's own view (not the leader's): each member is asked.
async fn members(settings: &Settings, addr: &str) -> Result<Membership> {
    let channel = settings
        .dial
        .endpoint(addr)
        .map_err(|e| anyhow!(e))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(3))
        .connect()
        .await?;
    let authed = berth_proto::connect::authed(channel, settings.dial.bearer.clone());
    Ok(ControllerServiceClient::new(authed)
        .list_members(ListMembersRequest {})
        .await?
        .into_inner()
        .membership
        .unwrap_or_default())
}

async fn list(settings: &Settings, format: Format) -> Result<()> {
    let addrs = settings.addr.as_str();
    // The membership, from the first controller that answers.
    let mut view: Option<Membership> = None;
    for addr in addrs.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        if let Ok(m) = members(settings, addr).await {
            view = Some(m);
            break;
        }
    }
    // Prefer the leader's view: only it knows how far each member has replicated.
    if let Some(leader_addr) = view
        .as_ref()
        .map(|v| v.leader_addr.clone())
        .filter(|a| !a.is_empty())
    {
        if let Ok(m) = members(settings, &leader_addr).await {
            view = Some(m);
        }
    }
    let view =
        view.ok_or_else(|| anyhow!("no controller in {addrs:?} answers; is one running?"))?;
    // Each member's own role and indexes, from the member itself.
    let mut rows: Vec<(Member, bool)> = Vec::new();
    for m in &view.members {
        match members(settings, &m.addr).await {
            Ok(own) => {
                let me = own
                    .members
                    .into_iter()
                    .find(|x| x.id == own.self_id)
                    .unwrap_or_default();
                rows.push((
                    Member {
                        matched: m.matched,
                        ..me
                    },
                    true,
                ));
            }
            Err(_) => rows.push((m.clone(), false)),
        }
    }
    if format == Format::Json {
        let out: Vec<_> = rows
            .iter()
            .map(|(m, up)| {
                json!({
                    "id": m.id, "addr": m.addr,
                    "role": if *up { m.role.as_str() } else { "unreachable" },
                    "term": m.term, "commit": m.commit, "applied": m.applied, "matched": m.matched,
                    "first_index": m.first_index, "suffrage": m.suffrage,
                    "leader": m.id == view.leader_id,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let body = rows
        .into_iter()
        .map(|(m, up)| {
            vec![
                m.id.to_string(),
                m.addr,
                if up { m.role } else { "unreachable".into() },
                m.term.to_string(),
                m.commit.to_string(),
                m.applied.to_string(),
                if m.matched > 0 {
                    m.matched.to_string()
                } else {
                    "-".into()
                },
            ]
        })
        .collect();
    println!(
        "{}",
        table(
            &["ID", "ADDRESS", "ROLE", "TERM", "COMMIT", "APPLIED", "MATCHED"],
            body
        )
    );
    Ok(())
}
