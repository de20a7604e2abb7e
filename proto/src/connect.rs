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

/// A channel whose quick calls have a deadline (`Deadlines`).
pub type Timed = Deadlines<Channel>;

/// A channel whose every request carries the caller's token, and whose
/// quick calls have a deadline.
pub type Authed = InterceptedService<Timed, Bearer>;

/// `channel` with deadlines and `bearer`'s token.
pub fn authed(channel: Channel, bearer: Bearer) -> Authed {
    InterceptedService::new(Deadlines::new(channel), bearer)
}

/// How long a quick call may take before the caller gives up on it.
pub const QUICK_DEADLINE: Duration = Duration::from_secs(30);

/// Calls that answer at once when the server is healthy: lookups, listings
/// and single writes. Streams, waits, transfers, commits and image work
/// take as long as they take, and have no deadline here.
fn is_quick(path: &str) -> bool {
    let method = path.rsplit('/').next().unwrap_or_default();
    method.starts_with("List")
        || method.starts_with("Get")
        || matches!(
            method,
            "SubmitJob"
                | "CancelJob"
                | "UpdateJob"
                | "ExplainJob"
                | "SetQuota"
                | "StatPath"
                | "WhoAmI"
                | "CreateToken"
                | "RevokeToken"
                | "SetPolicy"
                | "AddMember"
                | "RemoveMember"
                | "TransferLeader"
                | "CordonNode"
                | "DrainNode"
                | "RemoveNode"
                | "Register"
                | "Report"
                | "ImageSources"
                | "Join"
                | "RenewCertificate"
                | "UpdateContainer"
        )
}

/// A deadline on every quick call (`is_quick`), enforced here and sent to
/// the server (`grpc-timeout`): a peer whose network silently drops
/// packets fails the call in `QUICK_DEADLINE` instead of hanging it.
#[derive(Clone, Debug)]
pub struct Deadlines<S> {
    inner: S,
    deadline: Duration,
}

impl<S> Deadlines<S> {
    pub fn new(inner: S) -> Deadlines<S> {
        Deadlines {
            inner,
            deadline: QUICK_DEADLINE,
        }
    }
}

impl<S, B, R> tonic::codegen::Service<tonic::codegen::http::Request<B>> for Deadlines<S>
where
    S: tonic::codegen::Service<tonic::codegen::http::Request<B>, Response = R>,
    S::Error: Into<tonic::codegen::StdError>,
    S::Future: Send + 'static,
{
    type Response = R;
    type Error = tonic::codegen::StdError;
    type Future = tonic::codegen::BoxFuture<R, Self::Error>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: tonic::codegen::http::Request<B>) -> Self::Future {
        let deadline = is_quick(req.uri().path()).then_some(self.deadline);
        if let Some(d) = deadline {
            if let Ok(v) = format!("{}m", d.as_millis()).parse() {
                req.headers_mut().entry("grpc-timeout").or_insert(v);
            }
        }
        let call = self.inner.call(req);
        Box::pin(async move {
            match deadline {
                None => call.await.map_err(Into::into),
                Some(d) => match tokio::time::timeout(d, call).await {
                    Ok(r) => r.map_err(Into::into),
                    Err(_) => Err(Box::new(tonic::Status::deadline_exceeded(format!(
                        "no answer in {} s",
                        d.as_secs()
                    ))) as tonic::codegen::StdError),
                },
            }
        })
    }
}

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
        ControllerServiceClient::new(authed(channel, self.bearer.clone()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::codegen::{http, Service};

    /// A server that never answers (a silent partition).
    #[derive(Clone)]
    struct Silent;

    impl Service<http::Request<()>> for Silent {
        type Response = http::Response<()>;
        type Error = tonic::codegen::StdError;
        type Future = std::future::Pending<Result<Self::Response, Self::Error>>;
        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            std::future::pending()
        }
    }

    fn request(path: &str) -> http::Request<()> {
        http::Request::builder().uri(path).body(()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn quick_calls_give_up_and_streams_do_not() {
        let mut d = Deadlines {
            inner: Silent,
            deadline: Duration::from_secs(30),
        };
        let e = d
            .call(request("/berth.v1.JobService/ListJobs"))
            .await
            .unwrap_err();
        let status = e.downcast::<tonic::Status>().unwrap();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        // A followed log has no deadline: still waiting after an hour.
        let follow = d.call(request("/berth.v1.JobService/JobLogs"));
        assert!(tokio::time::timeout(Duration::from_secs(3600), follow)
            .await
            .is_err());
    }

    #[test]
    fn quick_means_lookups_and_single_writes() {
        for q in [
            "/berth.v1.JobService/SubmitJob",
            "/berth.v1.NodeService/ListNodes",
            "/berth.internal.v1.ControlPlane/Report",
        ] {
            assert!(is_quick(q), "{q}");
        }
        for slow in [
            "/berth.v1.JobService/WaitJob",
            "/berth.v1.JobService/Commit",
            "/berth.v1.ImageService/PushImage",
            "/berth.internal.v1.RaftService/Send",
            "/berth.v1.JobService/Exec",
        ] {
            assert!(!is_quick(slow), "{slow}");
        }
    }
}
