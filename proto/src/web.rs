//! The HTTPS side of Berth's programs: `/metrics` for Prometheus (and, on
//! the controller, the dashboard's pages), served with the process's own
//! certificate and behind the API's identities.
//!
//! Why HTTPS and a token, where node_exporter serves plain HTTP to anyone:
//! the series name users, jobs and hosts, and the token Prometheus sends
//! must not cross the network in the clear. Prometheus verifies the server
//! against the cluster CA (`tls_config.ca_file`) and sends a viewer's token
//! (`authorization.credentials_file`); see `deploy/prometheus/`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_rustls::rustls;

use crate::tls::Tls;
use crate::{Error, Result};

/// What Prometheus asks for and what `prometheus-client` writes.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The cookie the dashboard's login sets.
pub const TOKEN_COOKIE: &str = "berth_token";

/// Whoever a token belongs to, once admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    pub name: String,
    pub role: String,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No token, or one nobody issued (401).
    Unauthenticated(String),
    /// A valid token whose role may not read this (403).
    Forbidden(String),
    /// The check itself could not be made (503): say, the controller that
    /// knows the tokens is unreachable.
    Unavailable(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (code, msg) = match self {
            Refusal::Unauthenticated(m) => (StatusCode::UNAUTHORIZED, m),
            Refusal::Forbidden(m) => (StatusCode::FORBIDDEN, m),
            Refusal::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
        };
        let mut resp = (code, format!("{msg}\n")).into_response();
        if code == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"berth\""),
            );
        }
        resp
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Decides who may read: the controller looks a token up in its state; an
/// agent asks a controller.
pub trait Gate: Send + Sync + 'static {
    fn admit<'a>(&'a self, token: Option<&'a str>) -> BoxFuture<'a, Result<Viewer, Refusal>>;
}

/// The message for a request without a token.
pub fn no_token() -> Refusal {
    Refusal::Unauthenticated(
        "send a token as `Authorization: Bearer TOKEN` (a viewer's is enough: `berth token create NAME --role viewer`)".into(),
    )
}

/// The bearer token of `Authorization: Bearer TOKEN`, if any.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let t = v.strip_prefix("Bearer ").unwrap_or(v).trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// The token in the dashboard's cookie, if any.
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == TOKEN_COOKIE)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Registries one `/metrics` serves, in order (`berth dev` serves the
/// controller's and the agent's on one port).
#[derive(Clone, Default)]
pub struct Exposition(Vec<Arc<Registry>>);

impl std::fmt::Debug for Exposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Exposition").field(&self.0.len()).finish()
    }
}

impl Exposition {
    pub fn new(registries: Vec<Arc<Registry>>) -> Exposition {
        Exposition(registries)
    }

    /// The OpenMetrics text of every registry, ended once by `# EOF`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for r in &self.0 {
            // Writing to a String cannot fail.
            let _ = prometheus_client::encoding::text::encode_registry(&mut out, r);
        }
        let _ = prometheus_client::encoding::text::encode_eof(&mut out);
        out
    }
}

/// `GET /metrics`, for a bearer token the gate admits.
pub fn metrics_router(metrics: Exposition, gate: Arc<dyn Gate>) -> Router {
    Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: HeaderMap| {
            let (metrics, gate) = (metrics.clone(), gate.clone());
            async move {
                let token = bearer(&headers);
                match gate.admit(token.as_deref()).await {
                    Ok(_) => {
                        ([(header::CONTENT_TYPE, OPENMETRICS)], metrics.encode()).into_response()
                    }
                    Err(r) => r.into_response(),
                }
            }
        }),
    )
}

/// Serves `router` over HTTPS on `listener` until the listener fails.
/// `tls` is asked on every connection, so a renewed certificate is used
/// from the next scrape on.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: impl Fn() -> Tls + Send + Sync + 'static,
) -> std::io::Result<()> {
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like pass; don't spin on them.
                tracing::warn!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = match acceptor(&tls()) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "metrics listener: no usable certificate");
                continue;
            }
        };
        let router = router.clone();
        tokio::spawn(async move {
            // A client that never finishes its handshake holds nothing long.
            let Ok(Ok(stream)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(router);
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
        });
    }
}

/// A TLS acceptor presenting `tls`'s certificate; clients present none
/// (they authenticate with a token).
fn acceptor(tls: &Tls) -> Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, e: &dyn std::fmt::Display| Error::Tls(format!("{what}: {e}"));
    let (Some(cert), Some(key)) = (&tls.cert_pem, &tls.key_pem) else {
        return Err(Error::Tls("a server needs a certificate and key".into()));
    };
    let certs = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad("reading cert.pem", &e))?;
    let key =
        PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| bad("reading key.pem", &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("TLS versions", &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad("the certificate", &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_from_the_header_or_the_cookie() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h).as_deref(), Some("abc"));
        h.insert(header::COOKIE, "a=1; berth_token=xyz; b=2".parse().unwrap());
        assert_eq!(cookie_token(&h).as_deref(), Some("xyz"));
        h.insert(header::COOKIE, "berth_token=".parse().unwrap());
        assert_eq!(cookie_token(&h), None);
    }

    #[test]
    fn registries_share_one_eof() {
        use prometheus_client::metrics::counter::Counter;
        let mut a = Registry::default();
        a.register("a_things", "things", Counter::<u64>::default());
        let mut b = Registry::default();
        b.register("b_things", "things", Counter::<u64>::default());
        let text = Exposition::new(vec![Arc::new(a), Arc::new(b)]).encode();
        assert!(text.contains("a_things_total 0"), "{text}");
        assert!(text.contains("b_things_total 0"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
