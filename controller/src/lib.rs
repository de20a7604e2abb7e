//! Berth controller: keeps the cluster's state as a raft-replicated log of
//! commands (raft-rs, stored in sled) applied to a deterministic state machine,
//! schedules queued jobs onto free GPUs on the leader, and serves the public
//! `berth.v1` API and the agents' control plane.
//!
//! Layout:
//! - `state`: the deterministic state machine (`Command` → `apply`), with the
//!   placement re-check that keeps one GPU from ever serving two live jobs.
//! - `scheduler`: pure placement (snapshot in, plan out): constraints, shared
//!   GPUs, topology, priorities, fair share, quotas, backfill, preemption,
//!   gangs, arrays, and `explain`.
//! - `report`: pure rules turning agent reports into job transitions.
//! - `validate`: submit-time checks, before anything is written.
//! - `raft`: the replicated log: sled storage, the ready loop, the transport.
//! - `machine`: the state machine raft drives (`State` + in-memory telemetry).
//! - `core`: `Controller`: opens raft over sled, proposes, registers nodes,
//!   takes reports, runs leader passes; `jobs`: its job operations;
//!   `images`: image pushes, pulls, save/load/rm and GC across hosts;
//!   `lost`: failing (or restarting) the jobs of hosts that went silent.
//! - `views`: read-only views (scheduler snapshot, job lookup); `sched_queue`:
//!   the queue as the scheduler sees it, maintained as commands apply.
//! - `api`: thin tonic handlers; `server`: wiring, the leader loop, `run`.

pub mod api;
pub mod convert;
pub mod core;
mod error;
pub mod images;
pub mod jobs;
mod lost;

pub mod machine;
pub mod raft;
pub mod report;
pub mod sched_queue;

pub mod scheduler;
pub mod server;
pub mod state;
pub mod validate;
pub mod views;

pub use crate::core::{Controller, ControllerConfig};
pub use error::{Error, Result, LEADER_HEADER};
