//! `berth policy show|set FILE`: the cluster's mount and privilege policy,
//! as TOML. The controller checks it (and refuses a file that does not
//! parse or names unknown roles); `show` prints what is in force.

use std::path::PathBuf;

use anyhow::{Context, Result};
use berth_proto::v1::{GetPolicyRequest, SetPolicyRequest};

use crate::client::{status_message, Client};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Print the policy in force (the built-in default until an admin sets one).
    Show,
    /// Replace the policy with FILE's (TOML; `-` reads stdin). Admins.
    Set { file: PathBuf },
}

pub async fn run(client: &Client, cmd: Command) -> Result<()> {
    let mut access = client.access();
    match cmd {
        Command::Show => {
            let p = access
                .get_policy(GetPolicyRequest {})
                .await
                .map_err(status_message)?
                .into_inner();
            if p.is_default {
                println!("# the built-in default policy (no admin has set one)");
            }
            print!("{}", p.policy_toml);
        }
        Command::Set { file } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?
            };
            let p = access
                .set_policy(SetPolicyRequest { policy_toml: text })
                .await
                .map_err(status_message)?
                .into_inner();
            eprintln!("policy set:");
            print!("{}", p.policy_toml);
        }
    }
    Ok(())
}
