//! What a data dir remembers of the cluster that created it
//! (`cluster.json`): this controller's id, the members it started with and
//! the members now. Starting it with others would split or corrupt a
//! cluster (or mix two), so that is refused before sled is opened.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::ControllerConfig;
use crate::{Error, Result};

pub(super) fn open_db(dir: &Path) -> Result<sled::Db> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Storage(format!("{}: {e}", dir.display())))?;
    sled::open(dir.join("state.sled")).map_err(|e| {
        Error::Storage(format!(
            "cannot open {}: {e} (is another controller using this --data-dir?)",
            dir.display()
        ))
    })
}

/// What a data dir remembers of the controller that created it.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Membership {
    id: u64,
    /// The --peers it was created with.
    peers: BTreeMap<u64, String>,
    /// The members now, after changes made through the cluster.
    #[serde(default)]
    pub(super) current: BTreeMap<u64, String>,
}

fn membership_file(cfg: &ControllerConfig) -> PathBuf {
    cfg.data_dir.join("cluster.json")
}

/// A data dir remembers the id and members it was created with. Starting it
/// with others would split or corrupt a cluster (or mix two), so it is refused.
pub(super) fn check_membership(cfg: &ControllerConfig) -> Result<Option<Membership>> {
    let Ok(bytes) = std::fs::read(membership_file(cfg)) else {
        return Ok(None); // a new data dir
    };
    let stored: Membership = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Storage(format!("{}: corrupt: {e}", membership_file(cfg).display())))?;
    if stored.id != cfg.id {
        return Err(Error::FailedPrecondition(format!(
            "{} belongs to controller {}, not --id {}; use that id or a fresh --data-dir",
            cfg.data_dir.display(),
            stored.id,
            cfg.id
        )));
    }
    // A one-controller cluster may move to another address (berth dev on port 0).
    let same_single = stored.peers.len() == 1 && cfg.peers.len() == 1;
    if stored.peers != cfg.peers && stored.current != cfg.peers && !same_single {
        return Err(Error::FailedPrecondition(format!(
            "{} belongs to a cluster with members {}, but --peers says {}; start with the cluster's members, or use a fresh --data-dir",
            cfg.data_dir.display(),
            peers_text(&stored.peers),
            peers_text(&cfg.peers)
        )));
    }
    let mut stored = stored;
    if stored.current.is_empty() || same_single {
        stored.current = cfg.peers.clone();
    }
    Ok(Some(stored))
}

pub(super) fn write_membership(
    cfg: &ControllerConfig,
    current: &BTreeMap<u64, String>,
) -> Result<()> {
    write_membership_in(&cfg.data_dir, cfg.id, &cfg.peers, current)
}

/// `write_membership` for a data dir no controller runs on yet (a restore).
pub(super) fn write_membership_in(
    data_dir: &Path,
    id: u64,
    peers: &BTreeMap<u64, String>,
    current: &BTreeMap<u64, String>,
) -> Result<()> {
    let m = Membership {
        id,
        peers: peers.clone(),
        current: current.clone(),
    };
    let file = data_dir.join("cluster.json");
    let tmp = data_dir.join("cluster.json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(&m).expect("membership serialises"),
    )
    .and_then(|()| std::fs::rename(&tmp, &file))
    .map_err(|e| Error::Storage(format!("{}: {e}", file.display())))
}

pub fn peers_text(peers: &BTreeMap<u64, String>) -> String {
    peers
        .iter()
        .map(|(id, a)| format!("{id}={a}"))
        .collect::<Vec<_>>()
        .join(",")
}
