//! Channels between Berth's processes, and finding the leader.
//!
//! Every channel is TLS (`tls`): there is no plaintext mode to forget to
//! turn off. Every channel has a connect timeout and HTTP/2 keepalives, so
//! a peer whose network silently drops packets is noticed in seconds, not
//! when TCP gives up. Users add a bearer token (`Bearer`).
//!
//! Finding the leader: any controller answers `ListMembers`, naming the
//! leader; clients then talk to it. Shared by the CLI and the agents, which
//! are both given the full list of controllers.

use std::time::{Duration, Instant};

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::tls::{Tls, CONTROLLER_DOMAIN};
use crate::v1::controller_service_client::ControllerServiceClient;
use crate::v1::ListMembersRequest;

/// The metadata key a user's token travels in, as `Bearer SECRET`.
pub const AUTHORIZATION: &str = "authorization";

/// A TLS endpoint for `addr` whose server must hold a certificate of
/// `domain`'s role (`tls::CONTROLLER_DOMAIN`, `tls::NODE_DOMAIN`).
pub fn endpoint(addr: &str, tls: &Tls, domain: &str) -> Result<Endpoint, String> {
    let addr = addr.trim();
    let host = addr
        .strip_prefix("https://")
        .or_else(|| addr.strip_prefix("http://"))
        .unwrap_or(addr);
    Endpoint::from_shared(format!("https://{host}"))
        .and_then(|e| e.tls_config(tls.client(domain)))
        .map(|e| {
            e.connect_timeout(Duration::from_secs(3))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(10))
                .keep_alive_while_idle(true)
                // Image streams carry 2 MiB chunks (see the agent's images).
                .initial_stream_window_size(8 << 20)
                .initial_connection_window_size(16 << 20)
        })
        .map_err(|e| format!("bad address {addr:?}: {e}"))
}

/// Adds the user's token to every request; nothing when there is none
/// (agents and controllers authenticate with their certificates).
#[derive(Clone, Debug, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    pub fn new(token: Option<&str>) -> Result<Bearer, String> {
        match token.map(str::trim).filter(|t| !t.is_empty()) {
            None => Ok(Bearer(None)),
            Some(t) => format!("Bearer {t}")
                .parse()
                .map(|v| Bearer(Some(v)))
                .map_err(|_| "the token has characters a header cannot carry".to_string()),
        }
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert(AUTHORIZATION, v.clone());
        }
        Ok(req)
    }
}

/// A channel whose every request carries the caller's token.
pub type Authed = InterceptedService<Channel, Bearer>;

/// How to reach the controllers: the CA to trust (and own certificate),
/// and the user's token if any.
#[derive(Clone, Debug)]
pub struct Dial {
    pub tls: Tls,
    pub bearer: Bearer,
}

impl Dial {
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, String> {
        endpoint(addr, &self.tls, CONTROLLER_DOMAIN)
    }

    fn members(&self, channel: Channel) -> ControllerServiceClient<Authed> {
        ControllerServiceClient::with_interceptor(channel, self.bearer.clone())
    }
}

/// A channel to the current leader, and its address. While some controller
/// answers but no leader is elected (a failover), keeps asking for up to
/// `patience`; when none answers at all, fails at once.
pub async fn leader(
    dial: &Dial,
    addrs: &[String],
    patience: Duration,
) -> Result<(Channel, String), String> {
    let deadline = Instant::now() + patience;
    loop {
        let mut errors = Vec::new();
        let mut any_answered = false;
        for addr in addrs.iter().map(|a| a.trim()).filter(|a| !a.is_empty()) {
            let channel = match dial.endpoint(addr)?.connect().await {
                Ok(c) => c,
                Err(e) => {
                    errors.push(format!("{addr}: {e}"));
                    continue;
                }
            };
            let members = dial
                .members(channel.clone())
                .list_members(ListMembersRequest {})
                .await;
            let m = match members {
                Ok(m) => m.into_inner().membership.unwrap_or_default(),
                Err(s) => {
                    // Refused credentials are final: another controller
                    // would refuse them too.
                    if matches!(
                        s.code(),
                        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                    ) {
                        return Err(s.message().to_string());
                    }
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
                match confirmed(dial, &m.leader_addr).await? {
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
async fn confirmed(dial: &Dial, addr: &str) -> Result<Option<Channel>, String> {
    let Ok(channel) = dial.endpoint(addr)?.connect().await else {
        return Ok(None);
    };
    let leads = dial
        .members(channel.clone())
        .list_members(ListMembersRequest {})
        .await
        .ok()
        .and_then(|m| m.into_inner().membership)
        .is_some_and(|m| m.leader_id != 0 && m.leader_id == m.self_id);
    Ok(leads.then_some(channel))
}
