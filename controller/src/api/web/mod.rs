//! The controller's HTTPS port (`--metrics-listen`): `/metrics` for
//! Prometheus, behind the API's tokens (a viewer's or better).
//!
//! Authentication is the guard's own token check (`tokens::authenticate`)
//! on the replicated token table, so a token revoked through the API stops
//! working here at the same moment. Every replica serves its own port:
//! raft's series are per controller.

use std::sync::Arc;

use berth_proto::web::{self, BoxFuture, Exposition, Gate, Refusal, Viewer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use super::auth::{tokens, Identity, Role};
use crate::core::{convert, metrics, Controller};

/// Admits a token of a user of any role (viewers are the least, and may
/// read): what `rules::method` asks of the API's read methods.
pub struct TokenGate {
    pub ctl: Arc<Controller>,
    pub bootstrap_hash: Option<String>,
}

impl TokenGate {
    /// The check itself, without the future (tests, and the pages).
    pub fn check(&self, token: Option<&str>) -> Result<Viewer, Refusal> {
        let token = token.ok_or_else(web::no_token)?;
        let now = convert::now_ms();
        let id = self
            .ctl
            .read(|s| tokens::authenticate(s, self.bootstrap_hash.as_deref(), token, now))
            .map_err(|bad| Refusal::Unauthenticated(bad.message().into()))?;
        match id {
            Identity::User { name, role } if role >= Role::Viewer => Ok(Viewer {
                name,
                role: role.word().into(),
            }),
            other => Err(Refusal::Forbidden(format!(
                "{} may not read metrics; use a user's token",
                other.describe()
            ))),
        }
    }
}

impl Gate for TokenGate {
    fn admit<'a>(&'a self, token: Option<&'a str>) -> BoxFuture<'a, Result<Viewer, Refusal>> {
        Box::pin(async move { self.check(token) })
    }
}

/// Serves `/metrics` on `listener` with the controller's certificate:
/// the controller's own registry, then `extra` (`berth dev` adds its
/// agent's). Runs until the listener fails.
pub async fn serve(
    ctl: Arc<Controller>,
    bootstrap_hash: Option<String>,
    listener: TcpListener,
    extra: Vec<Arc<Registry>>,
) -> std::io::Result<()> {
    let mut registries = vec![Arc::new(metrics::registry(&ctl))];
    registries.extend(extra);
    let gate = Arc::new(TokenGate {
        ctl: ctl.clone(),
        bootstrap_hash,
    });
    let router = web::metrics_router(Exposition::new(registries), gate);
    let tls = ctl.tls.clone();
    web::serve(listener, router, move || tls.clone()).await
}
