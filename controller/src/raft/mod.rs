//! Raft replication of the controller's command log (issue 3, in progress).
//!
//! - `storage`: `raft::Storage` on sled (log, hard state, conf state, snapshot).

pub mod storage;

pub use storage::SledRaftStorage;
