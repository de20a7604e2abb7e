//! `Controller`: opens the raft node over sled, proposes commands through it,
//! and implements the operations the API exposes. Only the leader serves
//! the API and schedules; every replica applies the same committed commands
//! (`machine::Shared`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_proto::v1::{Event, NodeReport};
use tokio::sync::{broadcast, watch};

use crate::machine::{Shared, Telemetry};
use crate::raft::node::{self, RaftConfig};
use crate::raft::transport::{Cut, Transport};
use crate::raft::RaftHandle;
use crate::raft::{ProposeError, SledRaftStorage};
use crate::state::{Applied, Command, NodeRecord, State};
use crate::views::scheduler_snapshot;
use crate::{convert, scheduler, Error, Result};
use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2};

/// A node that has not reported for this long is DOWN: nothing new lands on it.
pub const NODE_DOWN_AFTER: Duration = Duration::from_secs(15);
/// A proposal not applied by then is answered "outcome unknown, retry".
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// Automatic image GC on hosts whose disk fills up.
    pub image_gc: crate::images::ImageGc,
    /// Finished jobs are forgotten this long after they ended; `None`
    /// keeps them forever.
    pub job_retention: Option<Duration>,
}

pub struct Controller {
    pub shared: Arc<Shared>,
    pub raft: RaftHandle,
    /// Test-only raft partition switch (see `Cut`).
    pub cut: Cut,
    pub image_gc: crate::images::ImageGc,
    pub job_retention: Option<Duration>,
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
        let shared = Arc::new(Shared::new());
        let (inbox, rx) = std::sync::mpsc::channel();
        let cut = Cut::from_env();
        let transport = Transport::start(cfg.id, &current, inbox.clone(), cut.clone());
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
            image_gc: cfg.image_gc,
            job_retention: cfg.job_retention,
        }))
    }

    /// Proposes `cmd` and waits until it is applied here.
    pub async fn propose(&self, cmd: Command) -> Result<Applied> {
        let data = serde_json::to_vec(&cmd).map_err(|e| Error::Storage(e.to_string()))?;
        match self.raft.propose(data, PROPOSE_TIMEOUT).await {
            Ok(Ok(applied)) => Ok(applied),
            Ok(Err(rejection)) => Err(Error::Rejected(rejection)),
            Err(ProposeError::NotLeader { .. }) => Err(self.not_leader()),
            Err(e @ ProposeError::Dropped) => Err(Error::Unavailable(e.to_string())),
            Err(ProposeError::Raft(e)) => Err(Error::Unavailable(e)),
        }
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

    pub fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.shared.subscribe_events()
    }

    /// Registers (or re-registers) a node; a no-op when nothing changed.
    pub async fn register(&self, node: NodeRecord) -> Result<String> {
        self.ensure_leader()?;
        // Agents label containers with the cluster id: never hand out none.
        self.ensure_cluster_id().await?;
        let unchanged = self.read(|s| s.nodes.get(&node.name) == Some(&node));
        if !unchanged {
            tracing::info!(node = %node.name, gpus = node.gpus.len(), backend = %node.gpu_backend, "node registered");
            self.propose(Command::RegisterNode(node)).await?;
        }
        Ok(self.cluster_id())
    }

    /// Gives a new cluster its id (Init applies only once, so racing callers are harmless).
    async fn ensure_cluster_id(&self) -> Result<()> {
        if self.cluster_id().is_empty() {
            let cluster_id = format!("{:016x}", rand::random::<u64>());
            self.propose(Command::Init { cluster_id }).await?;
        }
        Ok(())
    }

    /// Takes an agent's report: keeps its telemetry, and turns container facts
    /// into job transitions (started, exited, failed, stopped).
    pub async fn report(&self, report: NodeReport) -> Result<()> {
        self.ensure_leader()?;
        let commands = {
            let mut inner = self.shared.lock();
            if !inner.state.nodes.contains_key(&report.node) {
                return Err(Error::FailedPrecondition(format!(
                    "node {} is not registered; register first",
                    report.node
                )));
            }
            let commands = crate::report::transitions(&inner.state, &report, convert::now_ms());
            let stamp = match inner.telemetry.get(&report.node) {
                Some(old) if same_for_scheduling(&old.report, &report) => old.stamp,
                Some(old) => old.stamp + 1,
                None => 0,
            };
            inner.telemetry.insert(
                report.node.clone(),
                Telemetry {
                    at: Instant::now(),
                    report,
                    stamp,
                },
            );
            commands
        };
        for cmd in commands {
            if let Err(e) = self.propose(cmd).await {
                tracing::warn!(error = %e, "report transition refused");
            }
        }
        self.shared.schedule_needed.notify_one();
        Ok(())
    }

    pub fn telemetry(&self, node: &str) -> Option<Telemetry> {
        self.shared.lock().telemetry.get(node).cloned()
    }

    /// Whether the node has reported recently.
    pub fn node_ready(&self, node: &str) -> bool {
        self.telemetry(node)
            .is_some_and(|t| t.at.elapsed() < NODE_DOWN_AFTER)
    }

    /// Leader duties, one pass: give a new cluster its id, then schedule.
    /// Returns how many jobs were placed.
    pub async fn lead_once(&self) -> Result<usize> {
        if !self.is_leader() {
            return Ok(0);
        }
        self.ensure_cluster_id().await?;
        let snapshot = {
            let mut inner = self.shared.lock();
            if inner.state.queue.is_empty() {
                return Ok(0);
            }
            // A host lacking the image may be chosen when no holder can
            // take the job now: its agent then pulls it (JOB_STATE_PULLING).
            scheduler_snapshot(&mut inner, true)
        };
        let plan = scheduler::schedule(&snapshot);
        // Dropped before the plan applies, so the next pass's queue is
        // updated in place rather than copied (see `sched_queue`).
        drop(snapshot);
        if plan.placements.is_empty() && plan.preemptions.is_empty() {
            return Ok(0);
        }
        if plan.placements.len() <= 32 {
            for p in &plan.placements {
                tracing::info!(job = %p.job_id, node = %p.node, gpus = ?p.gpus.iter().map(|g| g.index).collect::<Vec<_>>(), "placing");
            }
        } else {
            tracing::info!(jobs = plan.placements.len(), "placing");
        }
        for (victim, for_job) in &plan.preemptions {
            tracing::info!(%victim, %for_job, "preempting");
        }
        let placed = plan.placements.len();
        self.propose(Command::Place {
            placements: plan.placements,
            preemptions: plan.preemptions.into_iter().map(|p| p.0).collect(),
        })
        .await?;
        Ok(placed)
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

fn open_db(dir: &Path) -> Result<sled::Db> {
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
struct Membership {
    id: u64,
    /// The --peers it was created with.
    peers: BTreeMap<u64, String>,
    /// The members now, after changes made through the cluster.
    #[serde(default)]
    current: BTreeMap<u64, String>,
}

fn membership_file(cfg: &ControllerConfig) -> PathBuf {
    cfg.data_dir.join("cluster.json")
}

/// A data dir remembers the id and members it was created with. Starting it
/// with others would split or corrupt a cluster (or mix two), so it is refused.
fn check_membership(cfg: &ControllerConfig) -> Result<Option<Membership>> {
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

fn write_membership(cfg: &ControllerConfig, current: &BTreeMap<u64, String>) -> Result<()> {
    let m = Membership {
        id: cfg.id,
        peers: cfg.peers.clone(),
        current: current.clone(),
    };
    let tmp = cfg.data_dir.join("cluster.json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(&m).expect("membership serialises"),
    )
    .and_then(|()| std::fs::rename(&tmp, membership_file(cfg)))
    .map_err(|e| Error::Storage(format!("{}: {e}", membership_file(cfg).display())))
}

pub fn peers_text(peers: &BTreeMap<u64, String>) -> String {
    peers
        .iter()
        .map(|(id, a)| format!("{id}={a}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether two reports agree on everything the scheduler reads: per GPU its
/// used memory and foreign processes, the images, the free disk.
fn same_for_scheduling(a: &NodeReport, b: &NodeReport) -> bool {
    a.gpus.len() == b.gpus.len()
        && a.gpus.iter().zip(&b.gpus).all(|(x, y)| {
            x.uuid == y.uuid
                && x.memory_used_bytes == y.memory_used_bytes
                && x.foreign_processes == y.foreign_processes
        })
        && a.images == b.images
        && a.disk.as_ref().map(|d| d.free_bytes) == b.disk.as_ref().map(|d| d.free_bytes)
}
