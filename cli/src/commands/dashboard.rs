//! `berth dashboard`: the link to the leader's web dashboard that signs
//! the current CLI user in (`?token=`, swapped by the page for a cookie
//! at once, so it does not stay in the address bar).

use anyhow::{anyhow, bail, Result};
use berth_proto::v1::{ListMembersRequest, WhoAmIRequest};
use serde_json::json;

use crate::client::{status_message, Client};
use crate::config::Settings;
use crate::output::Format;

pub async fn run(client: &Client, settings: &Settings, format: Format) -> Result<()> {
    let token = settings.token.as_deref().ok_or_else(|| {
        anyhow!("no token to sign in with: set BERTH_TOKEN or `token` in the config file (an admin runs `berth token create USER`)")
    })?;
    let who = client
        .access()
        .who_am_i(WhoAmIRequest {})
        .await
        .map_err(status_message)?
        .into_inner();
    let membership = client
        .controllers()
        .list_members(ListMembersRequest {})
        .await
        .map_err(status_message)?
        .into_inner()
        .membership
        .unwrap_or_default();
    if membership.dashboard_url.is_empty() {
        bail!(
            "the leader (controller {}) serves no dashboard: start berth-controller (or berth dev) with --metrics-listen ADDR",
            membership.self_id
        );
    }
    let url = format!("{}?token={token}", membership.dashboard_url);
    if format == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "url": url, "dashboard_url": membership.dashboard_url,
                "user": who.name, "role": who.role,
            }))?
        );
        return Ok(());
    }
    println!("{url}");
    eprintln!(
        "signs in as {} ({}); the link holds your token: do not share it. Your browser must trust the cluster CA (the `ca` of your berth config), or warn about the certificate.",
        who.name, who.role
    );
    Ok(())
}
