//! Berth controller: keeps the cluster's state as a log of commands applied to
//! a state machine persisted in sled, schedules queued jobs onto free GPUs, and
//! serves the public `berth.v1` API and the agents' control plane.
//!
//! Layout:
//! - `state`: the deterministic state machine (`Command` → `apply`), with the
//!   placement re-check that keeps one GPU from ever serving two live jobs.
//! - `scheduler`: pure FIFO best-fit placement (snapshot in, plan out).
//! - `report`: pure rules turning agent reports into job transitions.
//! - `validate`: submit-time checks, before anything is written.
//! - `store`: the sled command log and snapshots.
//! - `core`: `Controller`, the single writer (log → apply → notify) plus the
//!   in-memory telemetry agents report.
//! - `api`: thin tonic handlers; `server`: wiring, the scheduling loop, `run`.

pub mod api;
pub mod convert;
pub mod core;
mod error;
pub mod raft;
pub mod report;
pub mod scheduler;
pub mod server;
pub mod state;
pub mod store;
pub mod validate;

pub use crate::core::Controller;
pub use error::{Error, Result};
