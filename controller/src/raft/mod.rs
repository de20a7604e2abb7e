//! Raft replication of the controller's command log.
//!
//! - `storage`: `raft::Storage` on sled (log, hard state, conf state, snapshot).
//! - `node`: the ready loop on its own thread, and the async `RaftHandle`.
//! - `transport`: raft messages over tonic, one bounded queue per peer.

pub mod node;
pub mod storage;
pub mod transport;

pub use node::{ProposeError, RaftConfig, RaftHandle, RaftStatus, StateMachine};
pub use storage::SledRaftStorage;
