//! The guard: a tower layer in front of every service of the controller.
//! It authenticates (certificate, else bearer token), admits the request to
//! its method (`rules::admit`), hands the handler an `Identity`, and audits
//! mutating requests with their outcome. Every request gets an id (the
//! caller's `x-request-id` when it sends a sane one): the handler runs in a
//! `request` span carrying it, so each log line of the request names it
//! (`--log-format json`), as does its audit record and the response's
//! `x-request-id` header.

use std::sync::Arc;
use std::task::{Context, Poll};

use berth_proto::tls::Peer;
use tonic::body::Body;
use tonic::codegen::BoxFuture;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Code, Status};

use super::audit::{Audit, Record};
use super::rules::{admit, method};
use super::tokens;
use super::Identity;
use crate::core::{convert, Controller};

/// What the guard knows besides the state: the bootstrap token's hash and
/// where to audit.
#[derive(Debug, Default)]
pub struct Access {
    pub bootstrap_hash: Option<String>,
    pub audit: Option<Audit>,
    /// Priority above this needs an admin.
    pub priority_ceiling: i32,
    /// Queued jobs one user may have at once (0: no cap).
    pub max_queued_per_user: u32,
    /// This controller's own directories, which no mount may reach.
    pub protected_paths: Vec<String>,
    /// The cluster CA, to sign joining and renewing nodes' certificates.
    pub ca: Option<berth_proto::tls::Ca>,
    /// Submits per second each user may make (a burst of ten seconds'
    /// worth); `None`: no cap.
    pub submit_rate: Option<governor::DefaultKeyedRateLimiter<String>>,
    pub submit_rate_per_second: u32,
}

impl Access {
    /// A per-user submit cap of `per_second` (0: none).
    pub fn submit_rate(per_second: u32) -> Option<governor::DefaultKeyedRateLimiter<String>> {
        let rate = std::num::NonZeroU32::new(per_second)?;
        let burst = rate.saturating_mul(std::num::NonZeroU32::new(10)?);
        Some(governor::RateLimiter::keyed(
            governor::Quota::per_second(rate).allow_burst(burst),
        ))
    }
}

#[derive(Clone)]
pub struct GuardLayer {
    pub ctl: Arc<Controller>,
    pub access: Arc<Access>,
}

impl<S> tower::Layer<S> for GuardLayer {
    type Service = Guard<S>;
    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    layer: GuardLayer,
}

type HttpRequest = http::Request<Body>;
type HttpResponse = http::Response<Body>;

impl<S> tower::Service<HttpRequest> for Guard<S>
where
    S: tower::Service<HttpRequest, Response = HttpResponse> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = BoxFuture<HttpResponse, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: HttpRequest) -> Self::Future {
        // The clone is ready only after poll_ready: swap it in (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let path = req.uri().path().to_string();
            let info = req
                .extensions()
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .cloned();
            let from = info
                .as_ref()
                .and_then(|i| i.get_ref().remote_addr())
                .map(|a| a.to_string())
                .unwrap_or_default();
            let certs = info.and_then(|i| i.peer_certs());
            let bearer = req
                .headers()
                .get(berth_proto::connect::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim().to_string());
            let (_, mutating) = method(&path);
            let request_id = request_id(req.headers());
            let identity = match authenticate(&layer, certs.as_deref(), bearer.as_deref()) {
                Ok(id) => id,
                Err(status) => {
                    if mutating {
                        audit(
                            &layer,
                            None,
                            &from,
                            &path,
                            status.code(),
                            status.message(),
                            &request_id,
                        );
                    }
                    return Ok(with_id(status.into_http(), &request_id));
                }
            };
            if let Err(denied) = admit(identity.as_ref(), &path) {
                let status = Status::from(denied);
                if mutating || identity.is_some() {
                    audit(
                        &layer,
                        identity.as_ref(),
                        &from,
                        &path,
                        status.code(),
                        status.message(),
                        &request_id,
                    );
                }
                return Ok(with_id(status.into_http(), &request_id));
            }
            if let Some(id) = identity.clone() {
                req.extensions_mut().insert(id);
            }
            let who = identity
                .as_ref()
                .map(Identity::describe)
                .unwrap_or_default();
            let span = tracing::info_span!("request", id = %request_id, method = %path, who = %who);
            let resp = tracing::Instrument::instrument(inner.call(req), span).await?;
            if mutating {
                let (code, message) = outcome(&resp);
                audit(
                    &layer,
                    identity.as_ref(),
                    &from,
                    &path,
                    code,
                    &message,
                    &request_id,
                );
            }
            Ok(with_id(resp, &request_id))
        })
    }
}

/// Who the request is: a certificate's holder, else a token's user, else
/// nobody (`Ok(None)`: only unauthenticated methods admit it).
fn authenticate(
    layer: &GuardLayer,
    certs: Option<&Vec<tonic::transport::CertificateDer<'static>>>,
    bearer: Option<&str>,
) -> Result<Option<Identity>, Status> {
    // rustls has verified the chain to the cluster CA; the leaf names the role.
    if let Some(leaf) = certs.and_then(|c| c.first()) {
        return match Peer::from_der(leaf) {
            Some(Peer::Controller(id)) => Ok(Some(Identity::Controller(id))),
            Some(Peer::Node(n)) => Ok(Some(Identity::Node(n))),
            Some(Peer::User { name, role }) => match super::Role::parse(&role) {
                Some(role) => Ok(Some(Identity::User { name, role })),
                None => Err(Status::unauthenticated(format!(
                    "the client certificate names an unknown role {role:?}"
                ))),
            },
            None => Err(Status::unauthenticated(
                "the client certificate names no Berth role (berth://controller|node|user/...)",
            )),
        };
    }
    let Some(token) = bearer.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let now = convert::now_ms();
    layer
        .ctl
        .read(|s| tokens::authenticate(s, layer.access.bootstrap_hash.as_deref(), token, now))
        .map(Some)
        .map_err(|bad| Status::unauthenticated(bad.message()))
}

/// The code and message a response carries in its headers (an error
/// answered at once); a streamed answer's trailers come later, and count
/// as OK here: the call was admitted and started.
fn outcome(resp: &HttpResponse) -> (Code, String) {
    match Status::from_header_map(resp.headers()) {
        Some(s) => (s.code(), s.message().to_string()),
        None => (Code::Ok, String::new()),
    }
}

/// The caller's `x-request-id` if it is short and plain, else a new one.
fn request_id(headers: &http::HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map_or_else(|| format!("{:016x}", rand::random::<u64>()), str::to_string)
}

/// The header a request's id travels in, both ways.
pub const REQUEST_ID: &str = "x-request-id";

fn with_id(mut resp: HttpResponse, id: &str) -> HttpResponse {
    if let Ok(v) = http::HeaderValue::from_str(id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp
}

#[allow(clippy::too_many_arguments)]
fn audit(
    layer: &GuardLayer,
    id: Option<&Identity>,
    from: &str,
    method: &str,
    code: Code,
    message: &str,
    request_id: &str,
) {
    let Some(log) = &layer.access.audit else {
        return;
    };
    let (kind, name, role) = id.map(Identity::parts).unwrap_or(("", String::new(), ""));
    let record = Record {
        ts_ms: convert::now_ms(),
        kind,
        name: &name,
        role,
        from,
        method,
        outcome: berth_proto::audit::code_name(code),
        message,
        request_id,
    };
    if let Err(e) = log.append(&record) {
        tracing::error!(error = %e, "could not write the audit log");
    }
}
