//! The agent's Prometheus metrics (`--metrics-listen`): reconcile actions
//! and their errors, reports to the controller, the fence, image transfers
//! and image GC — what happens on this host. The GPUs' series, with who
//! holds each, are the controller's (it knows the jobs and users).
//!
//! One set per process, as Prometheus clients usually keep them: the
//! counters are bumped deep in the image code, which has no `Agent` in
//! hand, and a process runs one agent (`berth dev` included).
//!
//! Who may read: a user's token (a viewer's is enough), checked by asking
//! a controller `WhoAmI` with it — the agent holds no token table — and
//! remembered for a minute, so a scrape every 15 s costs one call a minute.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use berth_proto::v1::access_service_client::AccessServiceClient;
use berth_proto::v1::WhoAmIRequest;
use berth_proto::web::{self, BoxFuture, Gate, Refusal, Viewer};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use sha2::Digest;

type Labels = Vec<(&'static str, String)>;

/// What the agent counts.
#[derive(Debug)]
pub struct AgentMetrics {
    /// Reconcile actions by action (create, start, stop...) and outcome.
    pub actions: Family<Labels, Counter>,
    /// One reconcile pass: list, plan, act, report built.
    pub pass_seconds: Histogram,
    /// Reports sent to the controller, by outcome (ok, error).
    pub reports: Family<Labels, Counter>,
    /// 1 while the lease has run out and jobs are being fenced.
    pub fenced: Gauge,
    /// Image bytes on the wire, by direction (sent, received).
    pub image_bytes: Family<Labels, Counter>,
    /// Image transfers by direction and outcome (ok, failed).
    pub transfers: Family<Labels, Counter>,
    pub transfer_seconds: Histogram,
    /// Images removed by GC, and the bytes that freed.
    pub images_removed: Counter,
    pub image_bytes_freed: Counter,
}

static METRICS: LazyLock<AgentMetrics> = LazyLock::new(|| {
    let m = AgentMetrics {
        actions: Family::default(),
        // 1 ms .. ~30 s: an idle host to one starting many containers.
        pass_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
        reports: Family::default(),
        fenced: Gauge::default(),
        image_bytes: Family::default(),
        transfers: Family::default(),
        // 0.1 s .. ~55 min.
        transfer_seconds: Histogram::new(exponential_buckets(0.1, 2.0, 16)),
        images_removed: Counter::default(),
        image_bytes_freed: Counter::default(),
    };
    zeroed(&m);
    m
});

/// This process's agent metrics.
pub fn metrics() -> &'static AgentMetrics {
    &METRICS
}

/// Every known series starts at 0, so `rate()` and alerts see the first
/// failure rather than a series appearing.
fn zeroed(m: &AgentMetrics) {
    for outcome in ["ok", "error"] {
        m.reports
            .get_or_create_owned(&vec![("outcome", outcome.into())]);
    }
    for direction in ["sent", "received"] {
        m.image_bytes
            .get_or_create_owned(&vec![("direction", direction.into())]);
    }
    for outcome in ["ok", "failed"] {
        m.transfers.get_or_create_owned(&vec![
            ("direction", "received".into()),
            ("outcome", outcome.into()),
        ]);
    }
}

impl AgentMetrics {
    pub fn action(&self, action: &'static str, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.actions
            .get_or_create(&vec![
                ("action", action.into()),
                ("outcome", outcome.into()),
            ])
            .inc();
    }

    pub fn report(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.reports
            .get_or_create(&vec![("outcome", outcome.into())])
            .inc();
    }

    pub fn wire_bytes(&self, direction: &'static str, n: u64) {
        self.image_bytes
            .get_or_create(&vec![("direction", direction.into())])
            .inc_by(n);
    }

    pub fn transfer(&self, direction: &'static str, ok: bool, took: Duration) {
        let outcome = if ok { "ok" } else { "failed" };
        self.transfers
            .get_or_create(&vec![
                ("direction", direction.into()),
                ("outcome", outcome.into()),
            ])
            .inc();
        if ok {
            self.transfer_seconds.observe(took.as_secs_f64());
        }
    }
}

/// The registry `/metrics` serves; every series carries `node`, so one
/// Prometheus (or `berth dev`'s one port) tells the hosts apart.
pub fn registry(node: &str) -> Registry {
    let m = metrics();
    let mut r = Registry::with_labels(
        [(
            std::borrow::Cow::Borrowed("node"),
            std::borrow::Cow::Owned(node.to_string()),
        )]
        .into_iter(),
    );
    r.register(
        "berth_agent_reconcile_actions",
        "Container actions the reconciler took, by action and outcome",
        m.actions.clone(),
    );
    r.register_with_unit(
        "berth_agent_reconcile_duration",
        "One reconcile pass: list containers, plan, act, build the report",
        Unit::Seconds,
        m.pass_seconds.clone(),
    );
    r.register(
        "berth_agent_reports",
        "Reports sent to the controller, by outcome",
        m.reports.clone(),
    );
    r.register(
        "berth_agent_fenced",
        "1 while no controller has answered for half of --node-lost-after and jobs are stopped",
        m.fenced.clone(),
    );
    r.register_with_unit(
        "berth_agent_image_wire",
        "Image bytes on the wire (compressed where it paid), by direction",
        Unit::Bytes,
        m.image_bytes.clone(),
    );
    r.register(
        "berth_agent_image_transfers",
        "Image transfers by direction and outcome",
        m.transfers.clone(),
    );
    r.register_with_unit(
        "berth_agent_image_transfer_duration",
        "Time to receive and load an image (successful transfers)",
        Unit::Seconds,
        m.transfer_seconds.clone(),
    );
    r.register(
        "berth_agent_gc_images_removed",
        "Unneeded images removed by GC",
        m.images_removed.clone(),
    );
    r.register_with_unit(
        "berth_agent_gc_freed",
        "Disk space image GC freed",
        Unit::Bytes,
        m.image_bytes_freed.clone(),
    );
    r
}

/// What a controller said of a token, and when.
type Answer = (Instant, Result<Viewer, Refusal>);

/// How long an answer about a token is remembered.
const REMEMBER: Duration = Duration::from_secs(60);

/// Asks a controller who a token is (`WhoAmI`, dialled with the cluster CA
/// and the token alone, so the answer is the token's and not this node's
/// certificate's).
pub struct AskController {
    pub controllers: Vec<String>,
    pub tls: berth_proto::tls::Current,
    /// sha256 of a token → the answer and when it came.
    seen: Mutex<HashMap<[u8; 32], Answer>>,
}

impl AskController {
    pub fn new(controllers: Vec<String>, tls: berth_proto::tls::Current) -> AskController {
        AskController {
            controllers,
            tls,
            seen: Mutex::default(),
        }
    }

    async fn ask(&self, token: &str) -> Result<Viewer, Refusal> {
        let dial = berth_proto::connect::Dial {
            tls: berth_proto::tls::Tls::ca_only(self.tls.get().ca_pem),
            bearer: berth_proto::connect::Bearer::new(Some(token))
                .map_err(Refusal::Unauthenticated)?,
        };
        let mut errors = Vec::new();
        // Any controller answers WhoAmI from its own copy of the tokens.
        for addr in &self.controllers {
            let channel = match dial.endpoint(addr).map_err(|e| e.to_string()) {
                Ok(e) => match e.connect().await {
                    Ok(c) => c,
                    Err(e) => {
                        errors.push(format!("{addr}: {e}"));
                        continue;
                    }
                },
                Err(e) => {
                    errors.push(format!("{addr}: {e}"));
                    continue;
                }
            };
            let client = berth_proto::connect::authed(channel, dial.bearer.clone());
            return match AccessServiceClient::new(client)
                .who_am_i(WhoAmIRequest {})
                .await
            {
                Ok(r) => {
                    let r = r.into_inner();
                    if r.kind == "user" {
                        Ok(Viewer {
                            name: r.name,
                            role: r.role,
                        })
                    } else {
                        Err(Refusal::Forbidden(format!(
                            "a {} may not read metrics; use a user's token",
                            r.kind
                        )))
                    }
                }
                Err(s) if s.code() == tonic::Code::Unauthenticated => {
                    Err(Refusal::Unauthenticated(s.message().to_string()))
                }
                Err(s) => Err(Refusal::Unavailable(format!(
                    "cannot check the token: {}",
                    s.message()
                ))),
            };
        }
        Err(Refusal::Unavailable(format!(
            "cannot check the token: no controller answers ({})",
            errors.join("; ")
        )))
    }
}

impl Gate for AskController {
    fn admit<'a>(&'a self, token: Option<&'a str>) -> BoxFuture<'a, Result<Viewer, Refusal>> {
        Box::pin(async move {
            let token = token.ok_or_else(web::no_token)?;
            let key: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
            if let Some((at, answer)) = self.seen.lock().unwrap().get(&key) {
                if at.elapsed() < REMEMBER {
                    return answer.clone();
                }
            }
            let answer = self.ask(token).await;
            // An unreachable controller is not remembered: the next scrape asks again.
            if !matches!(answer, Err(Refusal::Unavailable(_))) {
                let mut seen = self.seen.lock().unwrap();
                seen.retain(|_, (at, _)| at.elapsed() < REMEMBER);
                seen.insert(key, (Instant::now(), answer.clone()));
            }
            answer
        })
    }
}

/// Serves `/metrics` on `listener` with the node's certificate.
pub async fn serve(
    agent: Arc<crate::Agent>,
    listener: tokio::net::TcpListener,
) -> std::io::Result<()> {
    let gate = Arc::new(AskController::new(
        agent.cfg.controllers.clone(),
        agent.cfg.tls.clone(),
    ));
    let router = web::metrics_router(
        web::Exposition::new(vec![Arc::new(registry(&agent.cfg.node))]),
        gate,
    );
    let tls = agent.cfg.tls.clone();
    web::serve(listener, router, move || tls.get()).await
}
