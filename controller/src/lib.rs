//! Berth controller: keeps the cluster's state as a raft-replicated log of
//! commands (raft-rs, stored in sled) applied to a deterministic state machine,
//! schedules queued jobs onto free GPUs on the leader, and serves the public
//! `berth.v1` API and the agents' control plane.
//!
//! Layout (imports go down this list, never up):
//! - `api`: the gRPC services and the operations behind them (submit, stop,
//!   reports from agents, image moves...); `api::server` wires them up.
//! - `leader`: what only the leader does: the scheduling pass and its
//!   incremental inputs, lost hosts, image GC, retention, `explain`.
//! - `core`: `Controller` (opens raft over sled, proposes, reads), the
//!   state machine raft drives, telemetry, lookups, records → wire.
//! - `raft`: the replicated log: sled storage, the ready loop, the transport.
//! - `scheduler`: pure placement (snapshot in, plan out): constraints, shared
//!   GPUs, topology, priorities, fair share, quotas, backfill, preemption,
//!   gangs, arrays, and `explain`.
//! - `state`: the deterministic state machine (`Command` → `apply`), with the
//!   placement re-check that keeps one GPU from ever serving two live jobs.

pub mod api;
pub mod core;
mod error;
pub mod leader;
pub mod raft;
pub mod scheduler;
pub mod state;

pub use crate::api::server::run;
pub use crate::core::{Controller, ControllerConfig};
pub use crate::leader::{Leader, LeaderConfig};
pub use error::{Error, Reason, Result, ERROR_DOMAIN, LEADER_HEADER};
