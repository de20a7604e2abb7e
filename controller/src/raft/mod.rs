//! Raft replication of the controller's command log.
//!
//! - `storage`: `raft::Storage` on sled (log, hard state, conf state, snapshot).
//! - `node`: the ready loop on its own thread.
//! - `handle`: its inbox (`Input`) and the async side's `RaftHandle`.
//! - `transport`: raft messages over tonic, one bounded queue per peer.

pub mod handle;
pub mod node;
pub mod storage;
pub mod transport;

pub use handle::{Fatal, ProposeError, RaftHandle, RaftStatus, StateMachine};
pub use node::RaftConfig;
pub use storage::SledRaftStorage;
