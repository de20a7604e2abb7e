//! Dialing an agent's data plane (`AgentService`): the controller proxies
//! users' logs, exec, cp, commit and image operations to the agent of the
//! host concerned, and asks agents to move and collect images.

use berth_proto::archive::{MAX_MESSAGE, WINDOW};
use berth_proto::connect::{Deadlines, Timed};
use berth_proto::internal::v1::agent_service_client::AgentServiceClient;
use berth_proto::tls::{node_domain, Tls};

use crate::{Error, Result};

/// A data-plane client for an agent, sized for image streams: mutual TLS,
/// this controller's certificate, the agent's verified as `node`'s.
pub async fn agent_client(tls: &Tls, node: &str, addr: &str) -> Result<AgentServiceClient<Timed>> {
    // The agent must hold *this* node's certificate: a node that
    // registered another's address cannot receive its sessions.
    let channel = berth_proto::connect::endpoint(addr, tls, &node_domain(node))
        .map_err(|e| Error::Unavailable(format!("bad agent address {addr}: {e}")))?
        .initial_stream_window_size(WINDOW)
        .initial_connection_window_size(2 * WINDOW)
        .connect()
        .await
        .map_err(|e| {
            Error::Unavailable(format!("cannot reach the agent of {node} at {addr}: {e}"))
        })?;
    Ok(AgentServiceClient::new(Deadlines::new(channel))
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE))
}
