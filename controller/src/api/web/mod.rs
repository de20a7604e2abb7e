//! The controller's HTTPS port (`--metrics-listen`): `/metrics` for
//! Prometheus and a read-only dashboard, both behind the API's tokens (a
//! viewer's or better).
//!
//! - `auth`: who is asking — a bearer token, the login cookie, or
//!   `?token=` (swapped at once for the cookie); the login page.
//! - `page`: the dashboard (GPUs as a heat map with holders, the queue
//!   with `explain`'s reasons, jobs), `job`: one job with its logs' tail
//!   (owner or admin, as `berth logs`), `chart`: usage per user as SVG.
//! - `html`: escaping, and the document around a page.
//! - `assets`: the stylesheet and the small script that refreshes the
//!   page when the event stream (`/events`) says something moved.
//!
//! Every replica serves its own port: raft's series are per controller;
//! GPU figures come from the leader (its telemetry).

mod assets;
pub mod auth;
mod chart;
mod html;
mod job;
mod page;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use berth_proto::web::{self, Exposition};
use futures::Stream;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::core::{metrics, Controller};
use crate::leader::Leader;
pub use auth::TokenGate;

/// Where and what the port serves besides the controller's own metrics
/// (`berth dev` adds its agent's registry).
pub struct Web {
    pub listener: TcpListener,
    pub extra: Vec<Arc<Registry>>,
}

#[derive(Clone)]
pub struct App {
    ctl: Arc<Controller>,
    leader: Arc<Leader>,
    gate: Arc<TokenGate>,
}

/// Serves `/metrics`, the dashboard and its assets on `web.listener` with
/// the controller's certificate, until the listener fails.
pub async fn serve(
    ctl: Arc<Controller>,
    leader: Arc<Leader>,
    bootstrap_hash: Option<String>,
    web: Web,
) -> std::io::Result<()> {
    let mut registries = vec![Arc::new(metrics::registry(&ctl))];
    registries.extend(web.extra);
    let gate = Arc::new(TokenGate {
        ctl: ctl.clone(),
        bootstrap_hash,
    });
    if let Ok(addr) = web.listener.local_addr() {
        let _ = ctl.dashboard_url.set(dashboard_url(&ctl, addr));
    }
    let app = App {
        ctl: ctl.clone(),
        leader,
        gate: gate.clone(),
    };
    let pages = Router::new()
        .route("/", get(dashboard))
        .route("/jobs/{id}", get(job_page))
        .route("/events", get(events))
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/logout", get(auth::logout))
        .route("/app.css", get(|| async { asset("text/css", assets::CSS) }))
        .route(
            "/app.js",
            get(|| async { asset("text/javascript", assets::JS) }),
        )
        .with_state(app)
        .layer(axum::middleware::map_response(secure_headers));
    let router = web::metrics_router(Exposition::new(registries), gate).merge(pages);
    let tls = ctl.tls.clone();
    web::serve(web.listener, router, move || tls.clone()).await
}

/// The address people reach this port at: the host of this controller's
/// API address (as the cluster knows it) and the port bound.
fn dashboard_url(ctl: &Controller, bound: std::net::SocketAddr) -> String {
    let own = ctl
        .raft
        .peers()
        .get(&ctl.raft.id)
        .cloned()
        .unwrap_or_default();
    let host = own
        .rsplit_once(':')
        .map(|(h, _)| h.to_string())
        .filter(|h| !h.is_empty() && h != "0.0.0.0" && h != "[::]")
        .unwrap_or_else(|| {
            if bound.ip().is_unspecified() {
                "localhost".into()
            } else {
                bound.ip().to_string()
            }
        });
    format!("https://{host}:{}/", bound.port())
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// Pages are never cached, framed, sniffed or referred onward; scripts
/// and styles come from this origin only.
async fn secure_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        h.entry(k).or_insert(HeaderValue::from_static(v));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'",
    );
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::CACHE_CONTROL, "no-store");
    resp
}

#[derive(serde::Deserialize, Default)]
struct PageQuery {
    token: Option<String>,
    /// Only the live part, for the script's refresh.
    fragment: Option<String>,
}

async fn dashboard(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let viewer = match auth::page_viewer(&app.gate, &headers, q.token.as_deref(), "/") {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let body = page::live(&app.ctl, &app.leader);
    if q.fragment.is_some() {
        return html(body);
    }
    html(page::whole(&viewer, "Berth", &body))
}

async fn job_page(
    State(app): State<App>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let here = format!("/jobs/{}", html::esc(&id));
    let viewer = match auth::page_viewer(&app.gate, &headers, q.token.as_deref(), &here) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let body = job::live(&app.ctl, &viewer, &id).await;
    if q.fragment.is_some() {
        return html(body);
    }
    html(page::whole(
        &viewer,
        &format!("Berth: job {}", html::esc(&id)),
        &body,
    ))
}

/// Server-sent events: one message per change the controller applies
/// (its revision only: the page fetches what it shows), so the page
/// refreshes when something moved.
async fn events(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Err(r) = auth::page_viewer(&app.gate, &headers, None, "/") {
        return *r;
    }
    let mut rx = app.ctl.subscribe_events();
    let stream: std::pin::Pin<Box<dyn Stream<Item = Result<SseEvent, Infallible>> + Send>> =
        Box::pin(async_stream::stream! {
            // A browser that lost the stream comes back within a second.
            yield Ok(SseEvent::default().retry(Duration::from_secs(1)).comment("berth"));
            loop {
                match rx.recv().await {
                    Ok(ev) => yield Ok(SseEvent::default().data(ev.index.to_string())),
                    // Missed some: one message says "refresh" as well.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        yield Ok(SseEvent::default().data("lagged"))
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn html(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}
