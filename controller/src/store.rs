//! Durable command log and state snapshots in sled.
//!
//! Layout: tree `log` maps a big-endian u64 index to a JSON `Command`; tree
//! `meta` holds `snapshot` (JSON `State`, whose `applied_index` says which log
//! prefix it covers). Opening replays the log after the snapshot. This is the
//! shape raft needs (issue 3 swaps `append` for raft's persisted entries and
//! `Ready` loop without changing the state machine).
//!
//! Nothing is acknowledged before `flush()` returned: a kill -9 right after an
//! acknowledged submit must not lose it.

use std::path::Path;

use crate::state::{Command, State};
use crate::{Error, Result};

/// Write a snapshot (and drop the log prefix it covers) every this many entries.
const SNAPSHOT_EVERY: u64 = 1_000;

pub struct Store {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
    last_snapshot: u64,
}

impl Store {
    /// Opens (or creates) the store under `dir` and rebuilds the state.
    pub fn open(dir: &Path) -> Result<(Store, State)> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Storage(format!("{}: {e}", dir.display())))?;
        let db = sled::open(dir.join("state.sled")).map_err(|e| {
            Error::Storage(format!(
                "cannot open {}: {e} (is another controller using this --data-dir?)",
                dir.display()
            ))
        })?;
        let log = db.open_tree("log")?;
        let meta = db.open_tree("meta")?;
        let mut state = match meta.get("snapshot")? {
            Some(bytes) => serde_json::from_slice::<State>(&bytes)
                .map_err(|e| Error::Storage(format!("corrupt snapshot: {e}")))?,
            None => State::default(),
        };
        state.reindex();
        let last_snapshot = state.applied_index;
        for item in log.range(key(state.applied_index + 1)..) {
            let (k, v) = item?;
            let index = u64::from_be_bytes(
                k.as_ref()
                    .try_into()
                    .map_err(|_| Error::Storage("corrupt log key".into()))?,
            );
            let cmd: Command = serde_json::from_slice(&v)
                .map_err(|e| Error::Storage(format!("corrupt log entry {index}: {e}")))?;
            // A refusal replays as a refusal: same outcome as when it was first applied.
            let _ = state.apply(index, &cmd);
        }
        Ok((
            Store {
                db,
                log,
                meta,
                last_snapshot,
            },
            state,
        ))
    }

    /// Makes `cmd` durable at `index`. Returns once it is on disk.
    pub fn append(&self, index: u64, cmd: &Command) -> Result<()> {
        let bytes = serde_json::to_vec(cmd).map_err(|e| Error::Storage(e.to_string()))?;
        self.log.insert(key(index), bytes)?;
        self.db.flush()?;
        Ok(())
    }

    /// Snapshots `state` if enough log has accumulated, then compacts the log.
    pub fn maybe_snapshot(&mut self, state: &State) -> Result<()> {
        if state.applied_index < self.last_snapshot + SNAPSHOT_EVERY {
            return Ok(());
        }
        self.snapshot(state)
    }

    pub fn snapshot(&mut self, state: &State) -> Result<()> {
        let bytes = serde_json::to_vec(state).map_err(|e| Error::Storage(e.to_string()))?;
        self.meta.insert("snapshot", bytes)?;
        self.db.flush()?;
        // Only after the snapshot is durable may the prefix it covers go.
        let mut batch = sled::Batch::default();
        for k in self.log.range(..=key(state.applied_index)).keys() {
            batch.remove(k?);
        }
        self.log.apply_batch(batch)?;
        self.last_snapshot = state.applied_index;
        Ok(())
    }
}

fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::JobSpec;

    fn submit(i: u64) -> Command {
        Command::Submit {
            id: format!("j{i}"),
            name: format!("n{i}"),
            spec: JobSpec {
                image: "busybox:latest".into(),
                ..Default::default()
            },
            at_ms: i as i64,
        }
    }

    #[test]
    fn reopen_replays_log_after_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut store, mut state) = Store::open(dir.path()).unwrap();
            for i in 1..=(SNAPSHOT_EVERY + 5) {
                store.append(i, &submit(i)).unwrap();
                state.apply(i, &submit(i)).unwrap();
                store.maybe_snapshot(&state).unwrap();
            }
            assert_eq!(store.last_snapshot, SNAPSHOT_EVERY);
            assert_eq!(store.log.len(), 5, "compacted prefix must be gone");
        }
        let (_store, state) = Store::open(dir.path()).unwrap();
        assert_eq!(state.applied_index, SNAPSHOT_EVERY + 5);
        assert_eq!(state.jobs.len() as u64, SNAPSHOT_EVERY + 5);
        assert_eq!(state.queue.len() as u64, SNAPSHOT_EVERY + 5);
        assert_eq!(state.live_job_named("n1"), Some("j1"), "indexes rebuilt");
    }
}
