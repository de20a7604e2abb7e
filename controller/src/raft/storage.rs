//! `raft::Storage` on sled: the raft log, hard state, conf state and the
//! latest snapshot, durable across restarts.
//!
//! Entries and metadata live in one sled tree, `raft`, so that a `Ready`'s
//! entries and hard state go to disk in one atomic batch (sled batches are
//! per tree):
//! - `e` + big-endian u64 index → `Entry` (protobuf, raft-rs's own encoding);
//! - `m:hs` → `HardState`, `m:cs` → `ConfState`.
//!
//! The latest snapshot (metadata and state-machine data) is a plain file,
//! `snapshot.bin` beside the sled db, written to a temporary file, fsynced
//! and renamed into place. In sled it cost first half the controller's CPU
//! (sharing a tree with the hard state, every `Ready` rewrote the page
//! holding the multi-MB blob), then most of a one-second stall per
//! compaction; a sequential file write is what a blob wants. The log prefix
//! a snapshot covers is deleted a few thousand entries per `Ready`, after the
//! snapshot is durable; `open` deletes whatever prefix a crash left.
//!
//! Nothing a peer is told may depend on a write before `flush()` returned:
//! the ready loop calls `persist(.., must_sync)` before sending persisted
//! messages.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

const HARD_STATE: &[u8] = b"m:hs";
const CONF_STATE: &[u8] = b"m:cs";
/// Log entries deleted per `purge_some` call.
const PURGE_BATCH: u64 = 2_000;

fn entry_key(index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'e';
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

fn read_snapshot(path: &Path) -> raft::Result<Option<Snapshot>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(Snapshot::parse_from_bytes(&b).map_err(store_err)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(store_err(e)),
    }
}

fn store_err(e: impl std::fmt::Display) -> raft::Error {
    raft::Error::Store(StorageError::Other(e.to_string().into()))
}

pub struct SledRaftStorage {
    db: sled::Db,
    tree: sled::Tree,
    snap_path: PathBuf,
    /// Entries below this index may still be on disk; all below `first` are dead.
    purged_to: u64,
    hard_state: HardState,
    conf_state: ConfState,
    snapshot_meta: SnapshotMetadata,
    /// Index of the first entry present (snapshot index + 1 when empty).
    first: u64,
    /// Index of the last entry present (snapshot index when empty).
    last: u64,
    /// Set when raft asked for a snapshot that is missing, too old, or of
    /// another configuration (a new learner must be in the snapshot's
    /// configuration, or it refuses it); the ready loop then cuts a new one.
    wanted: std::sync::atomic::AtomicBool,
}

impl SledRaftStorage {
    /// Opens the raft state stored in `db` (empty for a new node).
    /// Opens the raft state stored in `db`, with the snapshot file in `dir`.
    pub fn open(db: &sled::Db, dir: &Path) -> raft::Result<SledRaftStorage> {
        let tree = db.open_tree("raft").map_err(store_err)?;
        let snap_path = dir.join("snapshot.bin");
        let read = |key: &[u8]| tree.get(key).map_err(store_err);
        let hard_state = match read(HARD_STATE)? {
            Some(b) => HardState::parse_from_bytes(&b).map_err(store_err)?,
            None => HardState::default(),
        };
        let conf_state = match read(CONF_STATE)? {
            Some(b) => ConfState::parse_from_bytes(&b).map_err(store_err)?,
            None => ConfState::default(),
        };
        let snapshot_meta = match read_snapshot(&snap_path)? {
            Some(mut s) => s.take_metadata(),
            None => SnapshotMetadata::default(),
        };
        // A crash between writing a snapshot and dropping the log it covers
        // leaves a stale prefix: drop it now.
        let mut stale = sled::Batch::default();
        for k in tree
            .range(entry_key(0)..=entry_key(snapshot_meta.index))
            .keys()
        {
            stale.remove(k.map_err(store_err)?);
        }
        tree.apply_batch(stale).map_err(store_err)?;
        let mut entries = tree.range(entry_key(0)..=entry_key(u64::MAX)).keys();
        let index_of =
            |k: sled::IVec| u64::from_be_bytes(k[1..9].try_into().expect("9-byte entry key"));
        let first = match entries.next() {
            Some(k) => index_of(k.map_err(store_err)?),
            None => snapshot_meta.index + 1,
        };
        let last = match tree
            .range(entry_key(0)..=entry_key(u64::MAX))
            .keys()
            .next_back()
        {
            Some(k) => index_of(k.map_err(store_err)?),
            None => snapshot_meta.index,
        };
        Ok(SledRaftStorage {
            db: db.clone(),
            tree,
            snap_path,
            purged_to: first,
            hard_state,
            conf_state,
            snapshot_meta,
            first,
            last,
            wanted: Default::default(),
        })
    }

    /// Whether this node has ever been part of a cluster.
    pub fn is_initialized(&self) -> bool {
        !self.conf_state.voters.is_empty() || !self.conf_state.learners.is_empty()
    }

    /// Boots a brand-new cluster's configuration (voters), durably.
    pub fn initialize(&mut self, voters: &[u64]) -> raft::Result<()> {
        let cs = ConfState {
            voters: voters.to_vec(),
            ..Default::default()
        };
        let mut batch = sled::Batch::default();
        self.set_conf_state(&mut batch, cs)?;
        self.persist(batch, true)
    }

    /// First index still in the log (cheap; no `Result`).
    pub fn first_index_now(&self) -> u64 {
        self.first
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Stages `entries` (overwriting any conflicting suffix) into `batch`.
    pub fn append(&mut self, batch: &mut sled::Batch, entries: &[Entry]) -> raft::Result<()> {
        let Some(head) = entries.first() else {
            return Ok(());
        };
        assert!(
            head.index >= self.first,
            "append of compacted index {} (first {})",
            head.index,
            self.first
        );
        assert!(
            head.index <= self.last + 1,
            "gap: last {}, append {}",
            self.last,
            head.index
        );
        for stale in head.index..=self.last {
            batch.remove(&entry_key(stale));
        }
        for e in entries {
            batch.insert(&entry_key(e.index), e.write_to_bytes().map_err(store_err)?);
        }
        self.last = entries.last().expect("non-empty").index;
        Ok(())
    }

    pub fn set_hard_state(&mut self, batch: &mut sled::Batch, hs: HardState) -> raft::Result<()> {
        batch.insert(HARD_STATE, hs.write_to_bytes().map_err(store_err)?);
        self.hard_state = hs;
        Ok(())
    }

    pub fn set_conf_state(&mut self, batch: &mut sled::Batch, cs: ConfState) -> raft::Result<()> {
        batch.insert(CONF_STATE, cs.write_to_bytes().map_err(store_err)?);
        self.conf_state = cs;
        Ok(())
    }

    /// Applies `batch` atomically; fsyncs when `sync` (raft's `must_sync`).
    pub fn persist(&self, batch: sled::Batch, sync: bool) -> raft::Result<()> {
        self.tree.apply_batch(batch).map_err(store_err)?;
        if sync {
            self.db.flush().map_err(store_err)?;
        }
        Ok(())
    }

    /// Replaces the log with a snapshot received from the leader.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) -> raft::Result<()> {
        let meta = snapshot.get_metadata().clone();
        if meta.index < self.first.saturating_sub(1) {
            return Err(raft::Error::Store(StorageError::SnapshotOutOfDate));
        }
        self.write_snapshot(&snapshot)?;
        let mut batch = sled::Batch::default();
        for i in self.first..=self.last {
            batch.remove(&entry_key(i));
        }
        let mut hs = self.hard_state.clone();
        hs.term = hs.term.max(meta.term);
        hs.commit = hs.commit.max(meta.index);
        self.set_hard_state(&mut batch, hs)?;
        self.set_conf_state(&mut batch, meta.get_conf_state().clone())?;
        self.persist(batch, true)?;
        self.snapshot_meta = meta;
        self.first = self.snapshot_meta.index + 1;
        self.last = self.snapshot_meta.index;
        Ok(())
    }

    /// Stores a snapshot of the state machine at `index` (already applied
    /// here) and drops the log up to it. `data` is the encoded state.
    pub fn compact(&mut self, index: u64, data: Vec<u8>) -> raft::Result<()> {
        // Equal index: a fresh snapshot of the same point (its configuration changed).
        if index < self.snapshot_meta.index {
            return Ok(());
        }
        assert!(
            index <= self.last,
            "compact past the last entry ({index} > {})",
            self.last
        );
        let mut snap = Snapshot {
            data: data.into(),
            ..Default::default()
        };
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = self.entry_term(index)?;
        meta.set_conf_state(self.conf_state.clone());
        self.write_snapshot(&snap)?;
        // The entries up to `index` are dead from here; `purge_some` deletes them.
        self.snapshot_meta = snap.take_metadata();
        self.first = index + 1;
        Ok(())
    }

    /// The stored snapshot, to restore the state machine from at start-up.
    pub fn latest_snapshot(&self) -> raft::Result<Option<Snapshot>> {
        read_snapshot(&self.snap_path)
    }

    /// Whether raft wanted a snapshot we could not give; clears the flag.
    pub fn take_snapshot_wanted(&self) -> bool {
        self.wanted
            .swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    /// Durably stores `snap` as the latest snapshot (temp file, fsync, rename).
    fn write_snapshot(&self, snap: &Snapshot) -> raft::Result<()> {
        let tmp = self.snap_path.with_extension("tmp");
        let bytes = snap.write_to_bytes().map_err(store_err)?;
        let mut f = std::fs::File::create(&tmp).map_err(store_err)?;
        f.write_all(&bytes).map_err(store_err)?;
        f.sync_all().map_err(store_err)?;
        std::fs::rename(&tmp, &self.snap_path).map_err(store_err)?;
        if let Some(dir) = self.snap_path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(store_err)?;
        }
        Ok(())
    }

    /// Deletes a bounded slice of the log prefix a snapshot made dead, so a
    /// compaction does not stall the raft thread on tens of thousands of deletes.
    pub fn purge_some(&mut self) -> raft::Result<()> {
        if self.purged_to >= self.first {
            return Ok(());
        }
        let end = self.first.min(self.purged_to + PURGE_BATCH);
        let mut batch = sled::Batch::default();
        for i in self.purged_to..end {
            batch.remove(&entry_key(i));
        }
        self.tree.apply_batch(batch).map_err(store_err)?;
        self.purged_to = end;
        Ok(())
    }

    fn entry(&self, index: u64) -> raft::Result<Entry> {
        let bytes = self
            .tree
            .get(entry_key(index))
            .map_err(store_err)?
            .ok_or(raft::Error::Store(StorageError::Unavailable))?;
        Entry::parse_from_bytes(&bytes).map_err(store_err)
    }

    fn entry_term(&self, index: u64) -> raft::Result<u64> {
        if index == self.snapshot_meta.index {
            return Ok(self.snapshot_meta.term);
        }
        Ok(self.entry(index)?.term)
    }
}

impl raft::Storage for SledRaftStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        assert!(
            high <= self.last + 1,
            "entries up to {high}, last is {}",
            self.last
        );
        let max = max_size.into();
        let mut out = Vec::with_capacity((high - low) as usize);
        let mut size = 0u64;
        for item in self.tree.range(entry_key(low)..entry_key(high)) {
            let (_, v) = item.map_err(store_err)?;
            size += v.len() as u64;
            // At least one entry, then stop before exceeding max_size.
            if !out.is_empty() && max.is_some_and(|m| size > m) {
                break;
            }
            out.push(Entry::parse_from_bytes(&v).map_err(store_err)?);
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.snapshot_meta.index {
            return Ok(self.snapshot_meta.term);
        }
        if idx < self.first {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        self.entry_term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last)
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let snap = read_snapshot(&self.snap_path)?;
        match snap {
            Some(s)
                if s.get_metadata().index >= request_index
                    && s.get_metadata().get_conf_state() == &self.conf_state =>
            {
                Ok(s)
            }
            _ => {
                // Ask the ready loop for a fresh one; raft asks again later.
                self.wanted
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                Err(raft::Error::Store(
                    StorageError::SnapshotTemporarilyUnavailable,
                ))
            }
        }
    }
}

#[cfg(test)]
#[path = "storage_tests.rs"]
mod tests;
