//! Finding the leader: any controller answers `ListMembers`, naming the leader;
//! clients then talk to it. Shared by the CLI and the agents, which are both
//! given the full list of controllers.

use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};

use crate::v1::controller_service_client::ControllerServiceClient;
use crate::v1::ListMembersRequest;

fn endpoint(addr: &str) -> Result<Endpoint, String> {
    let uri = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    Endpoint::from_shared(uri)
        .map(|e| {
            e.connect_timeout(Duration::from_secs(2))
                .tcp_nodelay(true)
                // Image streams carry 2 MiB chunks (see the agent's images).
                .initial_stream_window_size(8 << 20)
                .initial_connection_window_size(16 << 20)
        })
        .map_err(|e| format!("bad address {addr:?}: {e}"))
}

/// A channel to the current leader, and its address. While some controller
/// answers but no leader is elected (a failover), keeps asking for up to
/// `patience`; when none answers at all, fails at once.
pub async fn leader(addrs: &[String], patience: Duration) -> Result<(Channel, String), String> {
    let deadline = Instant::now() + patience;
    loop {
        let mut errors = Vec::new();
        let mut any_answered = false;
        for addr in addrs.iter().map(|a| a.trim()).filter(|a| !a.is_empty()) {
            let channel = match endpoint(addr)?.connect().await {
                Ok(c) => c,
                Err(e) => {
                    errors.push(format!("{addr}: {e}"));
                    continue;
                }
            };
            let members = ControllerServiceClient::new(channel.clone())
                .list_members(ListMembersRequest {})
                .await;
            let m = match members {
                Ok(m) => m.into_inner().membership.unwrap_or_default(),
                Err(s) => {
                    errors.push(format!("{addr}: {}", s.message()));
                    continue;
                }
            };
            any_answered = true;
            if m.leader_id != 0 && m.leader_id == m.self_id {
                return Ok((channel, addr.to_string()));
            }
            if !m.leader_addr.is_empty() {
                // Followers name the leader they last heard from, which
                // during an election may have stepped down: use it only if
                // it says it leads.
                match confirmed(&m.leader_addr).await? {
                    Some(c) => return Ok((c, m.leader_addr)),
                    None => errors.push(format!(
                        "{} was named leader but does not lead (an election?)",
                        m.leader_addr
                    )),
                }
            } else {
                errors.push(format!("{addr}: no leader elected yet"));
            }
        }
        if !any_answered || Instant::now() >= deadline {
            return Err(errors.join("; "));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A channel to `addr` if it answers and says it leads.
async fn confirmed(addr: &str) -> Result<Option<Channel>, String> {
    let Ok(channel) = endpoint(addr)?.connect().await else {
        return Ok(None);
    };
    let leads = ControllerServiceClient::new(channel.clone())
        .list_members(ListMembersRequest {})
        .await
        .ok()
        .and_then(|m| m.into_inner().membership)
        .is_some_and(|m| m.leader_id != 0 && m.leader_id == m.self_id);
    Ok(leads.then_some(channel))
}
