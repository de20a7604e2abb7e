//! The raft ready loop. One thread owns the `RawNode`; everything else talks
//! to it through its inbox. Order per `Ready` (raft-rs "Processing the Ready
//! State"): send leader messages → apply snapshot → persist entries and hard
//! state in one batch (fsync when `must_sync`) → send persisted messages →
//! apply committed entries → answer read states → advance, then the same for
//! the `LightReady`.
//!
//! Batching: the inbox is drained before each `Ready`, so many proposals
//! share one fsync.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeV2, Entry, EntryType};
use raft::{RawNode, StateRole};
use tokio::sync::watch;

use super::handle::{
    ApplyOutput, Fatal, Input, OnMembers, Peers, ProposeError, RaftStatus, Reply, StateMachine,
};
use super::storage::SledRaftStorage;
use super::transport::Transport;

#[derive(Debug, Clone)]
pub struct RaftConfig {
    pub id: u64,
    pub peers: BTreeMap<u64, String>,
    pub tick: Duration,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// Snapshot and compact the log every this many applied entries.
    pub compact_every: u64,
}

impl RaftConfig {
    pub fn new(id: u64, peers: BTreeMap<u64, String>) -> RaftConfig {
        RaftConfig {
            id,
            peers,
            tick: Duration::from_millis(50),
            // Elections after 0.5–1 s of silence: failover well under 2 s.
            election_ticks: 10,
            heartbeat_ticks: 2,
            compact_every: 50_000,
        }
    }
}

struct Loop<SM: StateMachine> {
    raw: RawNode<SledRaftStorage>,
    sm: Arc<SM>,
    transport: Transport,
    cfg: RaftConfig,
    peers: Peers,
    /// Called with the new addresses after a membership change applies.
    on_members: OnMembers,
    pending: HashMap<u64, Reply<ApplyOutput>>,
    pending_conf: HashMap<u64, Reply<()>>,
    reads: HashMap<u64, Reply<u64>>,
    next_seq: u64,
    status: watch::Sender<RaftStatus>,
}

/// Starts the raft thread. `inbox`/`rx` is the node's input channel (the
/// transport's server side feeds it too).
pub fn spawn<SM: StateMachine>(
    cfg: RaftConfig,
    storage: SledRaftStorage,
    sm: Arc<SM>,
    transport: Transport,
    rx: Receiver<Input>,
    peers: Peers,
    on_members: OnMembers,
) -> raft::Result<watch::Receiver<RaftStatus>> {
    let config = raft::Config {
        id: cfg.id,
        election_tick: cfg.election_ticks,
        heartbeat_tick: cfg.heartbeat_ticks,
        max_size_per_msg: 1 << 20,
        max_inflight_msgs: 256,
        check_quorum: true,
        pre_vote: true,
        ..Default::default()
    };
    config.validate()?;
    // The caller restored the state machine from the last snapshot; raft
    // re-delivers the committed entries after it.
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let raw = RawNode::new(&config, storage, &logger)?;
    let (status_tx, status_rx) = watch::channel(RaftStatus::default());
    let mut lp = Loop {
        raw,
        sm,
        transport,
        cfg,
        peers,
        on_members,
        pending: HashMap::new(),
        pending_conf: HashMap::new(),
        reads: HashMap::new(),
        next_seq: 1,
        status: status_tx,
    };
    std::thread::Builder::new()
        .name("raft".into())
        .spawn(move || {
            // raft-rs panics on a storage error it meets inside (a term
            // read from a full disk): the controller must stop then, not
            // serve on with a dead raft thread.
            let died = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lp.run(rx)));
            if let Err(panic) = died {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown".into());
                stop(&storage_failure(&format!("the raft loop panicked: {why}")));
            }
        })
        .map_err(|e| raft::Error::Store(raft::StorageError::Other(e.into())))?;
    Ok(status_rx)
}

impl<SM: StateMachine> Loop<SM> {
    fn run(&mut self, rx: Receiver<Input>) {
        let mut last_tick = Instant::now();
        loop {
            let wait = self.cfg.tick.saturating_sub(last_tick.elapsed());
            match rx.recv_timeout(wait) {
                Ok(input) => self.handle(input),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while let Ok(input) = rx.try_recv() {
                self.handle(input);
            }
            if last_tick.elapsed() >= self.cfg.tick {
                self.raw.tick();
                last_tick = Instant::now();
            }
            if let Err(e) = self.on_ready() {
                // Storage failure: continuing could acknowledge what is not durable.
                stop(&storage_failure(&e.to_string()));
            }
            self.publish_status();
        }
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Propose { data, reply } => {
                let Some((seq, reply)) = self.lead(reply) else {
                    return;
                };
                let ctx = proposal_context(self.cfg.id, seq);
                match self.raw.propose(ctx, data) {
                    Ok(()) => {
                        self.pending.insert(seq, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(ProposeError::Raft(e.to_string())));
                    }
                }
            }
            Input::ConfChange { cc, addrs, reply } => {
                let Some((seq, reply)) = self.lead(reply) else {
                    return;
                };
                let mut ctx = proposal_context(self.cfg.id, seq);
                ctx.extend_from_slice(&serde_json::to_vec(&addrs).expect("addresses serialise"));
                match self.raw.propose_conf_change(ctx, cc) {
                    Ok(()) => {
                        self.pending_conf.insert(seq, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(ProposeError::Raft(e.to_string())));
                    }
                }
            }
            Input::Message(m) => {
                if let Err(e) = self.raw.step(m) {
                    tracing::debug!(error = %e, "raft message refused");
                }
            }
            Input::Unreachable(peer) => self.raw.report_unreachable(peer),
            Input::TransferLeader(target) => {
                tracing::info!(to = target, "handing leadership over");
                self.raw.transfer_leader(target);
            }
            Input::Snapshot(peer, status) => self.raw.report_snapshot(peer, status),
            Input::ReadIndex(reply) => {
                let Some((seq, reply)) = self.lead(reply) else {
                    return;
                };
                self.raw.read_index(proposal_context(self.cfg.id, seq));
                self.reads.insert(seq, reply);
            }
        }
    }

    /// A request sequence number when this node leads; otherwise `reply` is
    /// answered with `NotLeader` (naming the leader it knows) and consumed.
    fn lead<T>(&mut self, reply: Reply<T>) -> Option<(u64, Reply<T>)> {
        if self.raw.raft.state != StateRole::Leader {
            let _ = reply.send(Err(ProposeError::NotLeader {
                leader: self.raw.raft.leader_id,
            }));
            return None;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        Some((seq, reply))
    }

    fn on_ready(&mut self) -> raft::Result<()> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut ready = self.raw.ready();
        self.transport.send(ready.take_messages());
        if !ready.snapshot().is_empty() {
            let snap = ready.snapshot().clone();
            let index = snap.get_metadata().index;
            self.raw.mut_store().apply_snapshot(snap.clone())?;
            if let Err(Fatal(why)) = self.sm.restore(index, &snap.data) {
                stop(&why);
            }
        }
        let mut batch = sled::Batch::default();
        let store = self.raw.mut_store();
        store.append(&mut batch, ready.entries())?;
        if let Some(hs) = ready.hs() {
            store.set_hard_state(&mut batch, hs.clone())?;
        }
        store.persist(batch, ready.must_sync())?;
        self.transport.send(ready.take_persisted_messages());
        self.apply(ready.take_committed_entries())?;
        for rs in ready.take_read_states() {
            if let Some(reply) =
                parse_context(&rs.request_ctx, self.cfg.id).and_then(|s| self.reads.remove(&s))
            {
                let _ = reply.send(Ok(rs.index));
            }
        }
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            let mut hs = self.raw.store().hard_state().clone();
            hs.commit = commit;
            let mut batch = sled::Batch::default();
            self.raw.mut_store().set_hard_state(&mut batch, hs)?;
            self.raw.store().persist(batch, false)?;
        }
        self.transport.send(light.take_messages());
        self.apply(light.take_committed_entries())?;
        self.raw.advance_apply();
        self.maybe_leave_joint();
        self.maybe_compact()?;
        Ok(())
    }

    fn apply(&mut self, entries: Vec<Entry>) -> raft::Result<()> {
        for entry in entries {
            match entry.get_entry_type() {
                EntryType::EntryNormal => {
                    if entry.data.is_empty() {
                        continue; // a new leader's empty entry
                    }
                    let out = match self.sm.apply(entry.index, &entry.data) {
                        Ok(out) => out,
                        Err(Fatal(why)) => stop(&why),
                    };
                    if let Some(reply) = parse_context(&entry.context, self.cfg.id)
                        .and_then(|s| self.pending.remove(&s))
                    {
                        let _ = reply.send(Ok(out));
                    }
                }
                EntryType::EntryConfChange => {
                    let cc = ConfChange::parse_from_bytes(&entry.data)
                        .map_err(raft::Error::CodecError)?;
                    let cs = self.raw.apply_conf_change(&cc)?;
                    self.save_conf_state(cs)?;
                }
                EntryType::EntryConfChangeV2 => {
                    let cc = ConfChangeV2::parse_from_bytes(&entry.data)
                        .map_err(raft::Error::CodecError)?;
                    let cs = self.raw.apply_conf_change(&cc)?;
                    self.update_peers(&entry.context, &cs);
                    self.save_conf_state(cs)?;
                    if let Some(reply) = parse_context(&entry.context, self.cfg.id)
                        .and_then(|s| self.pending_conf.remove(&s))
                    {
                        let _ = reply.send(Ok(()));
                    }
                }
            }
        }
        Ok(())
    }

    /// Learns new members' addresses from a conf change's context, forgets
    /// removed members, and tells the transport.
    fn update_peers(&mut self, context: &[u8], cs: &raft::eraftpb::ConfState) {
        let added: BTreeMap<u64, String> = context
            .get(16..)
            .and_then(|json| serde_json::from_slice(json).ok())
            .unwrap_or_default();
        let members: std::collections::BTreeSet<u64> = cs
            .voters
            .iter()
            .chain(&cs.learners)
            .chain(&cs.voters_outgoing)
            .chain(&cs.learners_next)
            .copied()
            .collect();
        let snapshot = {
            let mut peers = self.peers.write().unwrap_or_else(|p| p.into_inner());
            for (id, addr) in added {
                if members.contains(&id) && peers.get(&id) != Some(&addr) {
                    peers.insert(id, addr.clone());
                    if id != self.cfg.id {
                        self.transport.add_peer(id, addr);
                    }
                }
            }
            let gone: Vec<u64> = peers
                .keys()
                .filter(|id| !members.contains(id))
                .copied()
                .collect();
            for id in gone {
                peers.remove(&id);
                self.transport.remove_peer(id);
            }
            peers.clone()
        };
        (self.on_members)(&snapshot);
    }

    fn save_conf_state(&mut self, cs: raft::eraftpb::ConfState) -> raft::Result<()> {
        let mut batch = sled::Batch::default();
        self.raw.mut_store().set_conf_state(&mut batch, cs)?;
        self.raw.store().persist(batch, true)
    }

    /// A leader that finds the configuration joint (its predecessor died
    /// mid-change) proposes the empty change that leaves it.
    fn maybe_leave_joint(&mut self) {
        let raft = &self.raw.raft;
        let joint = !self.raw.store().conf_state().voters_outgoing.is_empty();
        let pending = raft.pending_conf_index > raft.raft_log.applied;
        if raft.state == StateRole::Leader && joint && !pending {
            tracing::info!("leaving a joint configuration left by a previous leader");
            if let Err(e) = self
                .raw
                .propose_conf_change(Vec::new(), ConfChangeV2::default())
            {
                tracing::warn!(error = %e, "could not propose leaving the joint configuration");
            }
        }
    }

    fn maybe_compact(&mut self) -> raft::Result<()> {
        let applied = self.raw.raft.raft_log.applied;
        self.raw.mut_store().purge_some()?;
        let wanted = self.raw.store().take_snapshot_wanted();
        if !wanted && applied < self.raw.store().first_index_now() + self.cfg.compact_every {
            return Ok(());
        }
        let started = Instant::now();
        let data = self.sm.snapshot();
        let bytes = data.len();
        let encode_ms = started.elapsed().as_millis() as u64;
        self.raw.mut_store().compact(applied, data)?;
        tracing::info!(
            index = applied,
            bytes,
            encode_ms,
            took_ms = started.elapsed().as_millis() as u64,
            "snapshot taken, log compacted"
        );
        Ok(())
    }

    fn publish_status(&mut self) {
        let raft = &self.raw.raft;
        let role = match raft.state {
            StateRole::Leader => "leader",
            StateRole::Follower if raft.promotable() => "follower",
            StateRole::Follower => "learner",
            StateRole::Candidate => "candidate",
            StateRole::PreCandidate => "pre-candidate",
        };
        // A leader that stepped down cannot tell whether its pending proposals
        // will commit: fail them now rather than let callers wait out a timeout.
        if raft.state != StateRole::Leader
            && !(self.pending.is_empty() && self.pending_conf.is_empty())
        {
            for (_, reply) in self.pending.drain() {
                let _ = reply.send(Err(ProposeError::Dropped));
            }
            for (_, reply) in self.reads.drain() {
                let _ = reply.send(Err(ProposeError::Dropped));
            }
            for (_, reply) in self.pending_conf.drain() {
                let _ = reply.send(Err(ProposeError::Dropped));
            }
        }
        let matched = if raft.state == StateRole::Leader {
            raft.prs()
                .iter()
                .map(|(id, pr)| (*id, pr.matched))
                .collect()
        } else {
            BTreeMap::new()
        };
        let applied = raft.raft_log.applied;
        let serving = raft.state == StateRole::Leader
            && raft.raft_log.term(applied).is_ok_and(|t| t == raft.term);
        let cs = self.raw.store().conf_state();
        let (voters, learners) = (cs.voters.clone(), cs.learners.clone());
        let first_index = self.raw.store().first_index_now();
        let status = RaftStatus {
            first_index,
            voters,
            learners,
            serving,
            id: self.cfg.id,
            leader: raft.leader_id,
            role: role.to_string(),
            term: raft.term,
            commit: raft.raft_log.committed,
            applied: raft.raft_log.applied,
            matched,
        };
        self.status.send_if_modified(|s| {
            if *s != status {
                *s = status;
                true
            } else {
                false
            }
        });
    }
}

/// Proposal and read contexts: this node's id and a sequence number, so only
/// the node that proposed an entry answers its caller.
fn proposal_context(id: u64, seq: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(&seq.to_be_bytes());
    v
}

fn parse_context(ctx: &[u8], id: u64) -> Option<u64> {
    // Conf changes append the members' addresses after the 16 bytes.
    if ctx.len() < 16 || ctx[..8] != id.to_be_bytes() {
        return None;
    }
    Some(u64::from_be_bytes(ctx[8..16].try_into().ok()?))
}

/// What a storage error means to the operator: a full disk is the common
/// one, and the fix is theirs (nothing acknowledged is lost by stopping).
fn storage_failure(e: &str) -> String {
    let full = ["No space left", "os error 28", "ENOSPC", "Quota exceeded"];
    if full.iter().any(|w| e.contains(w)) {
        format!(
            "the disk under --data-dir is full ({e}): free space there and start this controller again; what it acknowledged is on disk, and the others carry on"
        )
    } else {
        format!("raft storage failed: {e}")
    }
}

/// Stops this controller: going on could acknowledge what is not durable,
/// or apply the log differently from the other controllers. Said on
/// stderr as well as in the log, for whoever starts it by hand.
fn stop(why: &str) -> ! {
    tracing::error!("{why}; stopping this controller");
    eprintln!("berth-controller: {why}; stopping");
    std::process::exit(70);
}
