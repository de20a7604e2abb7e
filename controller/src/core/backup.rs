//! Backups of the controller's data: a consistent snapshot taken on the
//! leader while the cluster runs (`snapshot`, streamed by `Backup`), fetched
//! by `download`, and `restore`d into a new data dir that a controller then
//! starts from — the way back from a lost quorum (docs/operations.md).
//!
//! A backup file is the state in the log's own versioned encoding
//! (`state::format`), so a newer controller reads an older backup, and an
//! older one refuses a newer backup instead of misreading it.

use std::collections::BTreeMap;
use std::path::Path;

use berth_proto::connect::{Authed, Dial};
use berth_proto::v1::controller_service_client::ControllerServiceClient;
use berth_proto::v1::BackupRequest;
use raft::eraftpb::{ConfState, Snapshot};

use super::membership::{open_db, write_membership_in};
use super::Controller;
use crate::raft::SledRaftStorage;
use crate::state::format;
use crate::{Error, Result};

/// What a backup holds, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub index: u64,
    pub bytes: u64,
    pub jobs: usize,
    pub nodes: usize,
}

impl Controller {
    /// The applied state, encoded, after a linearizable read point: every
    /// write acknowledged before the call is in it.
    pub async fn backup(&self) -> Result<(Vec<u8>, Summary)> {
        self.read_barrier().await?;
        let inner = self.shared.lock();
        let s = &inner.state;
        let data = format::encode_state(s);
        let summary = Summary {
            index: s.applied_index,
            bytes: data.len() as u64,
            jobs: s.jobs.len(),
            nodes: s.nodes.len(),
        };
        Ok((data, summary))
    }
}

/// Fetches a backup from the leader among `addrs` into `out` (written to a
/// temporary file first, then renamed: a failed backup leaves no file).
pub async fn download(dial: &Dial, addrs: &[String], out: &Path) -> Result<Summary> {
    let (channel, _) =
        berth_proto::connect::leader(dial, addrs, std::time::Duration::from_secs(10))
            .await
            .map_err(|e| Error::Unavailable(format!("no controller leader answered: {e}")))?;
    let mut client: ControllerServiceClient<Authed> =
        ControllerServiceClient::new(berth_proto::connect::authed(channel, dial.bearer.clone()))
            .max_decoding_message_size(8 << 20);
    let mut stream = client
        .backup(BackupRequest {})
        .await
        .map_err(|s| Error::Unavailable(s.message().to_string()))?
        .into_inner();
    let mut data = Vec::new();
    let mut summary = None;
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|s| Error::Unavailable(format!("the backup stream broke: {}", s.message())))?
    {
        if summary.is_none() {
            summary = Some(Summary {
                index: chunk.index,
                bytes: chunk.total_bytes,
                jobs: chunk.jobs as usize,
                nodes: chunk.nodes as usize,
            });
        }
        data.extend_from_slice(&chunk.data);
    }
    let summary = summary.ok_or_else(|| Error::Unavailable("the backup was empty".into()))?;
    if data.len() as u64 != summary.bytes {
        return Err(Error::Unavailable(format!(
            "the backup stream ended after {} of {} bytes; nothing was written",
            data.len(),
            summary.bytes
        )));
    }
    // Readable by this controller, or it is no backup.
    format::decode_state(summary.index, &data).map_err(|e| Error::Storage(e.to_string()))?;
    let tmp = out.with_extension("partial");
    std::fs::write(&tmp, &data)
        .and_then(|()| std::fs::rename(&tmp, out))
        .map_err(|e| Error::Storage(format!("writing {}: {e}", out.display())))?;
    Ok(summary)
}

/// Makes `data_dir` (which must not hold a controller's data) a controller's
/// data dir holding the backup in `file`, for controller `id` of a new
/// cluster of `peers` (the first of them started alone, or all three
/// restored from the same file). The cluster id, jobs, nodes, tokens and
/// policy are the backup's, so agents and clients carry on.
pub fn restore(
    file: &Path,
    data_dir: &Path,
    id: u64,
    peers: &BTreeMap<u64, String>,
) -> Result<Summary> {
    let data = std::fs::read(file)
        .map_err(|e| Error::InvalidArgument(format!("reading {}: {e}", file.display())))?;
    let state = format::decode_state(0, &data).map_err(|e| {
        Error::InvalidArgument(format!("{} is not a Berth backup: {e}", file.display()))
    })?;
    if data_dir.join("cluster.json").exists() || data_dir.join("state.sled").exists() {
        return Err(Error::FailedPrecondition(format!(
            "{} already holds a controller's data; restore into a new, empty --data-dir",
            data_dir.display()
        )));
    }
    if !peers.contains_key(&id) {
        return Err(Error::InvalidArgument(format!(
            "--id {id} is not in --peers; list this controller too"
        )));
    }
    let index = state.applied_index;
    let db = open_db(data_dir)?;
    let mut storage =
        SledRaftStorage::open(&db, data_dir).map_err(|e| Error::Storage(e.to_string()))?;
    let mut snap = Snapshot {
        data: data.clone().into(),
        ..Default::default()
    };
    let meta = snap.mut_metadata();
    meta.index = index;
    meta.term = 1;
    meta.set_conf_state(ConfState {
        voters: peers.keys().copied().collect(),
        ..Default::default()
    });
    storage
        .apply_snapshot(snap)
        .map_err(|e| Error::Storage(e.to_string()))?;
    db.flush().map_err(|e| Error::Storage(e.to_string()))?;
    write_membership_in(data_dir, id, peers, peers)?;
    Ok(Summary {
        index,
        bytes: data.len() as u64,
        jobs: state.jobs.len(),
        nodes: state.nodes.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restore_refuses_a_used_data_dir_and_a_file_that_is_no_backup() {
        let dir = tempfile::tempdir().unwrap();
        let peers = BTreeMap::from([(1, "127.0.0.1:1".to_string())]);
        let junk = dir.path().join("junk");
        std::fs::write(&junk, b"not a backup").unwrap();
        let e = restore(&junk, &dir.path().join("d"), 1, &peers).unwrap_err();
        assert!(e.to_string().contains("not a Berth backup"), "{e}");
        let good = dir.path().join("good");
        let mut state = crate::state::State::default();
        state.applied_index = 42;
        std::fs::write(&good, format::encode_state(&state)).unwrap();
        let s = restore(&good, &dir.path().join("d"), 1, &peers).unwrap();
        assert_eq!(s.index, 42);
        let e = restore(&good, &dir.path().join("d"), 1, &peers).unwrap_err();
        assert!(e.to_string().contains("already holds"), "{e}");
    }
}
