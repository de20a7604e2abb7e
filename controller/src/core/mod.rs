//! The controller's core: `Controller` opens the raft node over sled,
//! proposes commands through it and reads the state every replica applies
//! (`machine::Shared`). What only the leader does lives in `leader`, what
//! serves requests in `api`; both build on this, never the reverse.
//!
//! - `machine`: the state machine raft drives, and the apply observers.
//! - `telemetry`: the latest report of each node (leader memory only).
//! - `history`: the recent events, for watches that resume from a revision.
//! - `membership`: what a data dir remembers of its cluster (`cluster.json`).
//! - `lookup`: a job or group by id, name or prefix.
//! - `convert`: state records to `berth.v1` messages; `wire`: the API's
//!   job spec and states to the state's own, and back.
//! - `agents`: dialing an agent's data plane.
//! - `backup`: consistent online snapshots, and restoring one into a new
//!   data dir.
//! - `metrics`: Prometheus counters, and the series read off the state at
//!   scrape time (`metrics_state`).

mod agents;
pub mod backup;
pub mod convert;
pub mod history;
mod lookup;
pub mod machine;
mod membership;
pub mod metrics;
mod metrics_state;
mod telemetry;
pub mod wire;

pub use agents::agent_client;
pub use lookup::Target;
pub use membership::peers_text;
pub use telemetry::{down_after, Telemetry, NODE_DOWN_AFTER};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_proto::tls::Tls;
use berth_proto::v1::Event;
use tokio::sync::{broadcast, watch};

use crate::raft::node::{self, RaftConfig};
use crate::raft::transport::{Cut, Transport};
use crate::raft::RaftHandle;
use crate::raft::{ProposeError, SledRaftStorage, StateMachine};
use crate::state::{Applied, Command, State};
use crate::{Error, Result};
use machine::Shared;
use membership::{check_membership, open_db, write_membership};
use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2};

/// A proposal not applied by then is answered "outcome unknown, retry".
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// A leader transfer not done by then has failed (the old leader goes on).
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub id: u64,
    /// Every voting member's id and address (this one's included).
    pub peers: BTreeMap<u64, String>,
    pub data_dir: PathBuf,
    /// Join a running cluster (as a learner the leader adds) instead of
    /// forming one: the log starts empty and arrives from the leader.
    pub join: bool,
    /// Snapshot the state and compact the raft log every this many entries.
    pub snapshot_every: u64,
    /// This controller's certificate (a controller's) and the cluster CA:
    /// raft, agents' data planes and clients all speak mutual TLS.
    pub tls: Tls,
    /// A node silent this long has lost its jobs (`--node-lost-after`);
    /// its agent fences after half of it (docs/operations.md).
    pub node_lost_after: Duration,
    /// Events kept for watches that resume from a revision
    /// (`--event-history`; `history::HISTORY_EVENTS` by default).
    pub event_history: usize,
    /// Host ports Berth picks, and what a job holds per GPU by default.
    pub hosts: crate::scheduler::host::HostPolicy,
}

/// `--node-lost-after` by default.
pub const DEFAULT_NODE_LOST_AFTER: Duration = Duration::from_secs(30);

pub struct Controller {
    pub shared: Arc<Shared>,
    pub raft: RaftHandle,
    /// Test-only raft partition switch (see `Cut`).
    pub cut: Cut,
    /// What this controller presents and trusts (see `ControllerConfig`).
    pub tls: Tls,
    /// See `ControllerConfig::node_lost_after`.
    pub node_lost_after: Duration,
    /// See `ControllerConfig::hosts`.
    pub hosts: crate::scheduler::host::HostPolicy,
    /// What `/metrics` counts (see `metrics`).
    pub metrics: metrics::Metrics,
    /// This controller's dashboard (https://HOST:PORT/), once it serves one.
    pub dashboard_url: std::sync::OnceLock<String>,
}

impl Controller {
    /// Opens the data dir and starts the raft node. A new data dir joins the
    /// configuration given by `peers`; an existing one must have been created
    /// with the same members, or nothing is touched and opening fails.
    /// Must be called inside a tokio runtime (the transport spawns tasks).
    pub fn open(cfg: ControllerConfig) -> Result<Arc<Controller>> {
        if !cfg.peers.contains_key(&cfg.id) {
            return Err(Error::InvalidArgument(format!(
                "--id {} is not in --peers ({}); list this controller too",
                cfg.id,
                peers_text(&cfg.peers)
            )));
        }
        // Checked before sled is opened: a refused start must touch nothing.
        let stored = check_membership(&cfg)?;
        let db = open_db(&cfg.data_dir)?;
        let mut storage =
            SledRaftStorage::open(&db, &cfg.data_dir).map_err(|e| Error::Storage(e.to_string()))?;
        if !storage.is_initialized() && !cfg.join {
            let voters: Vec<u64> = cfg.peers.keys().copied().collect();
            storage
                .initialize(&voters)
                .map_err(|e| Error::Storage(e.to_string()))?;
        }
        // Membership changes since the data dir was created are remembered.
        let current = stored
            .map(|m| m.current)
            .unwrap_or_else(|| cfg.peers.clone());
        write_membership(&cfg, &current)?;
        let shared = Arc::new(Shared::with_history(cfg.event_history));
        // The state as of the last snapshot; raft re-delivers the committed
        // entries after it. A snapshot this controller cannot read (a newer
        // log format) stops it here, before it serves anything.
        if let Some(snap) = storage
            .latest_snapshot()
            .map_err(|e| Error::Storage(e.to_string()))?
        {
            shared
                .restore(snap.get_metadata().index, &snap.data)
                .map_err(|f| Error::FailedPrecondition(f.0))?;
        }
        let (inbox, rx) = std::sync::mpsc::channel();
        let cut = Cut::from_env();
        let transport = Transport::start(
            cfg.id,
            &current,
            inbox.clone(),
            cut.clone(),
            cfg.tls.clone(),
        );
        let mut raft_cfg = RaftConfig::new(cfg.id, current.clone());
        raft_cfg.compact_every = cfg.snapshot_every;
        if cfg.peers.len() == 1 {
            // A cluster of one elects itself at once; no need to wait out a timeout.
            raft_cfg.election_ticks = 2;
            raft_cfg.heartbeat_ticks = 1;
        }
        let peers = Arc::new(std::sync::RwLock::new(current));
        let record = cfg.clone();
        let on_members = Box::new(move |now: &BTreeMap<u64, String>| {
            if let Err(e) = write_membership(&record, now) {
                tracing::error!(error = %e, "could not record the new membership");
            }
        });
        let status = node::spawn(
            raft_cfg,
            storage,
            shared.clone(),
            transport,
            rx,
            peers.clone(),
            on_members,
        )
        .map_err(|e| Error::Storage(format!("starting raft: {e}")))?;
        Ok(Arc::new(Controller {
            shared,
            raft: RaftHandle {
                inbox,
                status,
                peers,
                id: cfg.id,
            },
            cut,
            tls: cfg.tls.clone(),
            node_lost_after: cfg.node_lost_after,
            hosts: cfg.hosts,
            metrics: metrics::Metrics::new(),
            dashboard_url: std::sync::OnceLock::new(),
        }))
    }

    /// Proposes `cmd` and waits until it is applied here.
    pub async fn propose(&self, cmd: Command) -> Result<Applied> {
        let data = crate::state::format::encode_command(&cmd);
        let start = Instant::now();
        let (outcome, result) = match self.raft.propose(data, PROPOSE_TIMEOUT).await {
            Ok(Ok(applied)) => ("applied", Ok(applied)),
            Ok(Err(rejection)) => ("rejected", Err(Error::Rejected(rejection))),
            Err(ProposeError::NotLeader { .. }) => ("not_leader", Err(self.not_leader())),
            Err(e @ ProposeError::Dropped) => ("unknown", Err(Error::Unavailable(e.to_string()))),
            Err(ProposeError::Raft(e)) => ("unknown", Err(Error::Unavailable(e))),
        };
        let applied = matches!(outcome, "applied" | "rejected");
        self.metrics
            .proposal(outcome, applied.then(|| start.elapsed()));
        result
    }

    /// The API is served by the leader; others point at it.
    pub fn ensure_leader(&self) -> Result<()> {
        if self.raft.is_leader() {
            Ok(())
        } else {
            Err(self.not_leader())
        }
    }

    fn not_leader(&self) -> Error {
        Error::NotLeader {
            leader: self.raft.leader_addr().map(|(_, addr)| addr),
        }
    }

    /// A linearizable read point: confirms leadership with a quorum
    /// (ReadIndex) and waits until this replica has applied that far.
    pub async fn read_barrier(&self) -> Result<()> {
        self.ensure_leader()?;
        self.raft
            .read_barrier(PROPOSE_TIMEOUT)
            .await
            .map_err(|e| match e {
                ProposeError::NotLeader { .. } => self.not_leader(),
                other => Error::Unavailable(other.to_string()),
            })
    }

    pub fn is_leader(&self) -> bool {
        self.raft.is_leader()
    }

    /// Runs `f` on the current state.
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.shared.lock().state)
    }

    pub fn cluster_id(&self) -> String {
        self.read(|s| s.cluster_id.clone())
    }

    pub fn subscribe_applied(&self) -> watch::Receiver<u64> {
        self.shared.subscribe_applied()
    }

    pub fn subscribe_events(&self) -> broadcast::Receiver<std::sync::Arc<Event>> {
        self.shared.subscribe_events()
    }

    /// Gives a new cluster its id (Init applies only once, so racing callers are harmless).
    pub(crate) async fn ensure_cluster_id(&self) -> Result<()> {
        if self.cluster_id().is_empty() {
            let cluster_id = format!("{:016x}", rand::random::<u64>());
            self.propose(Command::Init { cluster_id }).await?;
        }
        Ok(())
    }
}

impl Controller {
    /// Adds controller `id` at `addr`: as a learner first, so it catches up
    /// (by snapshot when the log was compacted) without weakening the
    /// quorum, then as a voter once its log matches the leader's.
    pub async fn add_member(&self, id: u64, addr: String) -> Result<()> {
        self.ensure_leader()?;
        if id == 0 || self.raft.peers().contains_key(&id) {
            return Err(Error::InvalidArgument(format!(
                "controller {id} is already a member (or 0)"
            )));
        }
        let addrs: BTreeMap<u64, String> = [(id, addr)].into();
        self.change(ConfChangeType::AddLearnerNode, id, addrs.clone())
            .await?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let st = self.raft.status();
            if st.matched.get(&id).copied().unwrap_or(0) >= st.commit {
                break;
            }
            if Instant::now() > deadline {
                return Err(Error::Unavailable(format!(
                    "controller {id} was added as a learner but has not caught up in 120 s; is it running with --join?"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.change(ConfChangeType::AddNode, id, addrs).await
    }

    /// Hands leadership to `target` (0: the most up-to-date follower) and
    /// waits for another controller to lead. Returns the new leader.
    pub async fn transfer_leadership(&self, target: u64) -> Result<u64> {
        self.raft
            .transfer_leader(target, TRANSFER_TIMEOUT)
            .await
            .map_err(|e| match e {
                ProposeError::NotLeader { .. } => self.not_leader(),
                ProposeError::Raft(m) => Error::FailedPrecondition(m),
                other => Error::Unavailable(other.to_string()),
            })
    }

    pub async fn remove_member(&self, id: u64) -> Result<()> {
        self.ensure_leader()?;
        if !self.raft.peers().contains_key(&id) {
            return Err(Error::NotFound(format!("controller {id} is not a member")));
        }
        self.change(ConfChangeType::RemoveNode, id, BTreeMap::new())
            .await
    }

    async fn change(
        &self,
        kind: ConfChangeType,
        id: u64,
        addrs: BTreeMap<u64, String>,
    ) -> Result<()> {
        let mut single = ConfChangeSingle::default();
        single.set_change_type(kind);
        single.node_id = id;
        let mut cc = ConfChangeV2::default();
        cc.set_changes(vec![single].into());
        self.raft
            .change_members(cc, addrs, PROPOSE_TIMEOUT)
            .await
            .map_err(|e| match e {
                ProposeError::NotLeader { .. } => self.not_leader(),
                other => Error::Unavailable(other.to_string()),
            })
    }
}
