//! Joining a node with a token, as `kubeadm join --token` does: the agent
//! sends a certificate request for a key it made and keeps; a valid,
//! unexpired, unused join token gets it a node certificate for its name.
//! The token is spent in the log (`UseJoinToken`), so two agents racing
//! with one token cannot both join.

use berth_proto::internal::v1::JoinRequest;
use berth_proto::tls::{Peer, NODE_CERT_LIFETIME};
use tonic::Status;

use crate::api::auth::guard::Access;
use crate::api::auth::tokens;
use crate::core::{convert, Controller};
use crate::state::Command;

pub async fn join(ctl: &Controller, access: &Access, req: JoinRequest) -> Result<String, Status> {
    ctl.ensure_leader()?;
    tokens::check_name("node name", &req.node)?;
    let now = convert::now_ms();
    let rec = ctl
        .read(|s| tokens::lookup(s, &req.token, now).cloned())
        .map_err(|bad| Status::unauthenticated(bad.message()))?;
    if rec.role != "join" {
        return Err(Status::permission_denied(
            "that is a user token; an agent joins with `berth token create --join` (rule: join.token)",
        ));
    }
    if !rec.user.is_empty() && rec.user != req.node {
        return Err(Status::permission_denied(format!(
            "this join token is for node {}, not {} (rule: join.token-node)",
            rec.user, req.node
        )));
    }
    // A token for any name must not take over a node the cluster knows:
    // that would hand its exec and cp sessions to the newcomer.
    if rec.user.is_empty() && ctl.read(|s| s.nodes.contains_key(&req.node)) {
        return Err(Status::already_exists(format!(
            "node {} is already registered; to re-join it, use a join token made for it (`berth token create --join {}`) (rule: join.known-node)",
            req.node, req.node
        )));
    }
    let cert = sign(access, &req.node, &req.csr_pem)?;
    ctl.propose(Command::UseJoinToken { id: rec.id.clone() })
        .await?;
    tracing::info!(node = %req.node, token = %rec.id, "node joined");
    Ok(cert)
}

/// A node certificate for `node` over the key in `csr_pem`.
pub fn sign(access: &Access, node: &str, csr_pem: &str) -> Result<String, Status> {
    let ca = access.ca.as_ref().ok_or_else(|| {
        Status::failed_precondition(
            "this controller has no CA key (ca.key in --tls-dir), so it cannot sign certificates",
        )
    })?;
    if csr_pem.len() > 64 << 10 {
        return Err(Status::invalid_argument(
            "a certificate request over 64 KiB",
        ));
    }
    ca.sign_request(csr_pem, &Peer::Node(node.to_string()), NODE_CERT_LIFETIME)
        .map_err(|e| Status::invalid_argument(e.to_string()))
}
