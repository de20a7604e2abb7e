//! This node's certificate: getting one with a join token, and renewing
//! it before it expires (in its last third, as kubelet does), with the
//! certificate it has. The key is made here and never leaves the host.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_proto::connect::{Bearer, Dial};
use berth_proto::internal::v1::control_plane_client::ControlPlaneClient;
use berth_proto::internal::v1::{JoinRequest, RenewCertificateRequest};
use berth_proto::tls::{new_request, renewal_due, Peer, Tls, NODE_CERT_LIFETIME};

use crate::agent::Agent;
use crate::{Error, Result};

/// Asks the controllers for a certificate for `node` with a join token.
/// `ca_only` trusts the cluster CA (its `ca.pem`) and presents nothing.
pub async fn join(controllers: &[String], ca_only: &Tls, node: &str, token: &str) -> Result<Tls> {
    let (key_pem, csr_pem) = new_request(&Peer::Node(node.to_string()))?;
    let dial = Dial {
        tls: ca_only.clone(),
        bearer: Bearer::default(),
    };
    let (channel, _) = berth_proto::connect::leader(&dial, controllers, Duration::from_secs(30))
        .await
        .map_err(Error::Controller)?;
    let cert_pem = ControlPlaneClient::new(channel)
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
        let tls = agent.cfg.tls.get();
        let Some(not_after) = tls.not_after() else {
            return;
        };
        let lifetime = lifetime_of(&tls).unwrap_or(NODE_CERT_LIFETIME);
        let wait = if renewal_due(not_after, lifetime, SystemTime::now()) {
            match renew(&agent).await {
                Ok(()) => Duration::ZERO,
                Err(e) => {
                    tracing::warn!(error = %e, "certificate renewal failed; retrying");
                    Duration::from_secs(60).min(lifetime / 10)
                }
            }
        } else {
            // Wake when it falls due (capped: clocks move).
            let due = not_after - lifetime / 3;
            due.duration_since(SystemTime::now())
                .unwrap_or_default()
                .min(Duration::from_secs(3600))
        };
        tokio::time::sleep(wait.max(Duration::from_millis(200))).await;
    }
}

/// The certificate's own lifetime (not_after − not_before, less the hour
/// of clock slack every Berth certificate starts with).
fn lifetime_of(tls: &Tls) -> Option<Duration> {
    let der = tls.cert_der()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let v = cert.validity();
    let secs = v.not_after.timestamp() - v.not_before.timestamp() - 3600;
    u64::try_from(secs)
        .ok()
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
}

async fn renew(agent: &Agent) -> Result<()> {
    let current = agent.cfg.tls.get();
    let (key_pem, csr_pem) = new_request(&Peer::Node(agent.cfg.node.clone()))?;
    let dial = Dial {
        tls: current.clone(),
        bearer: Bearer::default(),
    };
    let (channel, _) =
        berth_proto::connect::leader(&dial, &agent.cfg.controllers, Duration::from_secs(10))
            .await
            .map_err(Error::Controller)?;
    let cert_pem = ControlPlaneClient::new(channel)
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
        save(&renewed, dir)?;
    }
    agent.cfg.tls.set(renewed);
    agent.cert_generation.send_modify(|g| *g += 1);
    tracing::info!(node = %agent.cfg.node, "certificate renewed");
    Ok(())
}

/// Writes the key and certificate (each to a temporary file renamed into
/// place, so a reader never sees half a file).
pub fn save(tls: &Tls, dir: &Path) -> Result<()> {
    Ok(tls.save(dir)?)
}
