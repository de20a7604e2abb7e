//! Dialing an agent's data plane (`AgentService`): the controller proxies
//! users' logs, exec, cp, commit and image operations to the agent of the
//! host concerned, and asks agents to move and collect images.

use berth_proto::archive::{MAX_MESSAGE, WINDOW};
use berth_proto::internal::v1::agent_service_client::AgentServiceClient;
use tonic::transport::{Channel, Endpoint};

use crate::{Error, Result};

/// A data-plane client for an agent, sized for image streams.
pub async fn agent_client(node: &str, addr: &str) -> Result<AgentServiceClient<Channel>> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| Error::Unavailable(format!("bad agent address {addr}: {e}")))?
        .initial_stream_window_size(WINDOW)
        .initial_connection_window_size(2 * WINDOW)
        .connect()
        .await
        .map_err(|e| {
            Error::Unavailable(format!("cannot reach the agent of {node} at {addr}: {e}"))
        })?;
    Ok(AgentServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE))
}
