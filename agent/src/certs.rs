//! This node's certificate: getting one with a join token, and renewing
//! it before it expires (in its last third, as kubelet does), with the
//! certificate it has. The key is made here and never leaves the host.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_proto::internal::v1::{JoinRequest, RenewCertificateRequest};
use berth_proto::tls::{new_request, Peer, Tls};

use crate::agent::{control_plane, Agent};
use crate::{Error, Result};

/// Asks the controllers for a certificate for `node` with a join token.
/// `ca_only` trusts the cluster CA (its `ca.pem`) and presents nothing.
pub async fn join(controllers: &[String], ca_only: &Tls, node: &str, token: &str) -> Result<Tls> {
    let (key_pem, csr_pem) = new_request(&Peer::Node(node.to_string()))?;
    let cert_pem = control_plane(controllers, ca_only.clone(), Duration::from_secs(30))
        .await?
        .join(JoinRequest {
            token: token.to_string(),
            node: node.to_string(),
            csr_pem,
        })
        .await
        .map_err(|s| Error::Controller(format!("joining as {node}: {}", s.message())))?
        .into_inner()
        .cert_pem;
    Ok(Tls {
        ca_pem: ca_only.ca_pem.clone(),
        cert_pem: Some(cert_pem),
        key_pem: Some(key_pem),
    })
}

/// Renews the certificate when due, then sleeps until the next look; runs
/// until the process ends. A failed renewal is retried a minute later
/// (the old certificate still works until it expires).
pub async fn renew_forever(agent: Arc<Agent>) {
    loop {
        let Some(validity) = agent.cfg.tls.get().validity() else {
            return;
        };
        let wait = match validity.renew_at().duration_since(SystemTime::now()) {
            // Not due: wake when it is (capped: clocks move).
            Ok(until) => until.min(Duration::from_secs(3600)),
            Err(_) => match renew(&agent).await {
                Ok(()) => Duration::ZERO,
                Err(e) => {
                    tracing::warn!(error = %e, "certificate renewal failed; retrying");
                    Duration::from_secs(60).min(validity.lifetime / 10)
                }
            },
        };
        tokio::time::sleep(wait.max(Duration::from_millis(200))).await;
    }
}

async fn renew(agent: &Agent) -> Result<()> {
    let current = agent.cfg.tls.get();
    let (key_pem, csr_pem) = new_request(&Peer::Node(agent.cfg.node.clone()))?;
    let cert_pem = control_plane(
        &agent.cfg.controllers,
        current.clone(),
        Duration::from_secs(10),
    )
    .await?
    .renew_certificate(RenewCertificateRequest { csr_pem })
    .await
    .map_err(|s| Error::Controller(format!("renewing: {}", s.message())))?
    .into_inner()
    .cert_pem;
    let renewed = Tls {
        ca_pem: current.ca_pem,
        cert_pem: Some(cert_pem),
        key_pem: Some(key_pem),
    };
    if renewed.peer() != Some(Peer::Node(agent.cfg.node.clone())) {
        return Err(Error::Controller(
            "the renewed certificate does not name this node".into(),
        ));
    }
    if let Some(dir) = &agent.cfg.tls_dir {
        // Each file through a temporary one renamed into place.
        renewed.save(dir)?;
    }
    agent.cfg.tls.set(renewed);
    agent.cert_generation.send_modify(|g| *g += 1);
    tracing::info!(node = %agent.cfg.node, "certificate renewed");
    Ok(())
}
