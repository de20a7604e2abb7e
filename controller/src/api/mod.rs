//! The gRPC services a controller serves, and the operations behind them.
//! Handlers only adapt: decode → call the operation → encode.
//!
//! - `server`: the wiring (every service on one listener), `run`.
//! - `auth`: who calls (the guard) and what they may do (`rules`); tokens,
//!   the audit log, redaction. `access`: `AccessService` — tokens, policy.
//! - `jobs`: `JobService` — submit, stop, update, wait, logs, and the
//!   container verbs (exec, cp, commit) proxied to the job's agent;
//!   `validate`: submit-time checks, before anything is written.
//! - `images`: `ImageService` — push, save, load, rm, gc across hosts.
//! - `nodes`, `events`, `members`: `NodeService`, `EventService`,
//!   `ControllerService`.
//! - `control`: `ControlPlane`, what agents call — register, report (and
//!   the pure rules turning reports into job transitions), their desired
//!   allocations, image sources.
//! - `usage`: `UsageService` — the usage ledger's reports.
//! - `web`: the HTTPS port: `/metrics` behind the same tokens.

pub mod access;
pub mod auth;
pub mod control;
pub mod events;
pub mod images;
pub mod jobs;
pub mod members;
pub mod nodes;
pub mod server;
pub mod usage;
pub mod validate;
mod validate_run;
pub mod web;

use futures::{Stream, StreamExt};

/// The rest of a client's stream, until it ends or breaks: a broken client
/// stream then reads as an early end upstream (an upload without its
/// trailer, which the agent refuses to load).
pub(crate) fn rest<T: Send + 'static>(
    inbound: tonic::Streaming<T>,
) -> impl Stream<Item = T> + Send + 'static {
    inbound
        .take_while(|m| std::future::ready(m.is_ok()))
        .filter_map(|m| std::future::ready(m.ok()))
}
