//! The raft thread's inbox and the async side's handle on it: what callers
//! send (`Input`), what they get back, and `RaftHandle`, which proposes,
//! reads and changes members by message and awaits the reply. Split from
//! the ready loop (`node`) so that the transport, which feeds the same
//! inbox, depends on this and not on the loop.

use std::collections::BTreeMap;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use raft::eraftpb::{ConfChangeV2, Message};
use raft::SnapshotStatus;
use tokio::sync::{oneshot, watch};

use crate::state::{Applied, Rejection};

/// What applying one committed entry produced.
pub type ApplyOutput = Result<Applied, Rejection>;

/// The replicated state machine, driven by the raft thread only.
pub trait StateMachine: Send + Sync + 'static {
    /// Applies the entry at `index`. `Err` means the entry cannot be
    /// applied at all (say, a newer log format): the controller must stop
    /// rather than go on with a state the others do not have.
    fn apply(&self, index: u64, data: &[u8]) -> Result<ApplyOutput, Fatal>;
    /// The encoded state as of the last applied entry.
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the state with a snapshot's; `Err` as for `apply`.
    fn restore(&self, index: u64, data: &[u8]) -> Result<(), Fatal>;
}

/// Why the state machine cannot go on: the controller stops with this.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Fatal(pub String);

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum ProposeError {
    #[error("not the leader")]
    NotLeader { leader: u64 },
    #[error("leadership changed before the command committed; its outcome is unknown, retry it")]
    Dropped,
    #[error("raft: {0}")]
    Raft(String),
}

pub enum Input {
    Propose {
        data: Vec<u8>,
        reply: oneshot::Sender<Result<ApplyOutput, ProposeError>>,
    },
    Message(Message),
    Unreachable(u64),
    Snapshot(u64, SnapshotStatus),
    /// Replies with an index: once applied reaches it, reads are linearizable.
    ReadIndex(oneshot::Sender<Result<u64, ProposeError>>),
    /// Hand leadership to this voter (raft's leader transfer).
    TransferLeader(u64),
    /// A membership change; `addrs` (id → address) travel in its context so
    /// every member learns where new members are. Replies once applied.
    ConfChange {
        cc: ConfChangeV2,
        addrs: BTreeMap<u64, String>,
        reply: oneshot::Sender<Result<(), ProposeError>>,
    },
}

/// Where the raft thread answers a request.
pub(super) type Reply<T> = oneshot::Sender<Result<T, ProposeError>>;

/// Members' addresses, shared by the raft thread (which changes them as
/// configuration changes apply) and the API (which shows them).
pub type Peers = Arc<std::sync::RwLock<BTreeMap<u64, String>>>;

/// Called with the members' addresses after each membership change applies
/// (the controller records them in its data dir).
pub type OnMembers = Box<dyn Fn(&BTreeMap<u64, String>) + Send>;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RaftStatus {
    pub id: u64,
    pub leader: u64,
    pub role: String,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    /// Leader only: replicated index per peer.
    pub matched: BTreeMap<u64, u64>,
    /// A leader that has applied an entry of its own term, and so everything
    /// committed before it. Only then may it answer reads or drive agents: a
    /// leader fresh from a restart has not replayed its log yet.
    pub serving: bool,
    pub first_index: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
}

/// A handle the async side uses to reach the raft thread.
#[derive(Clone)]
pub struct RaftHandle {
    pub inbox: Sender<Input>,
    pub status: watch::Receiver<RaftStatus>,
    pub peers: Peers,
    pub id: u64,
}

impl RaftHandle {
    /// Proposes `data`; resolves once applied here. A proposal raft drops
    /// silently resolves to `Dropped` after `timeout`.
    pub async fn propose(
        &self,
        data: Vec<u8>,
        timeout: Duration,
    ) -> Result<ApplyOutput, ProposeError> {
        let (reply, rx) = oneshot::channel();
        self.inbox
            .send(Input::Propose { data, reply })
            .map_err(|_| ProposeError::Raft("raft thread stopped".into()))?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) | Err(_) => Err(ProposeError::Dropped),
        }
    }

    /// Waits until this leader may serve a linearizable read (ReadIndex).
    pub async fn read_barrier(&self, timeout: Duration) -> Result<(), ProposeError> {
        let (reply, rx) = oneshot::channel();
        self.inbox
            .send(Input::ReadIndex(reply))
            .map_err(|_| ProposeError::Raft("raft thread stopped".into()))?;
        let index = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r?,
            _ => return Err(ProposeError::Dropped),
        };
        let mut status = self.status.clone();
        let applied = tokio::time::timeout(timeout, status.wait_for(|s| s.applied >= index))
            .await
            .is_ok_and(|r| r.is_ok());
        if applied {
            Ok(())
        } else {
            Err(ProposeError::Dropped)
        }
    }

    /// Hands leadership to `target` (0: the voter that has replicated the
    /// most), and waits until another controller leads. Returns it.
    pub async fn transfer_leader(
        &self,
        target: u64,
        timeout: Duration,
    ) -> Result<u64, ProposeError> {
        let st = self.status();
        if st.leader != self.id {
            return Err(ProposeError::NotLeader { leader: st.leader });
        }
        let target = if target != 0 {
            if target == self.id || !st.voters.contains(&target) {
                return Err(ProposeError::Raft(format!(
                    "controller {target} is not another voting member"
                )));
            }
            target
        } else {
            st.voters
                .iter()
                .filter(|v| **v != self.id)
                .max_by_key(|v| {
                    (
                        st.matched.get(v).copied().unwrap_or(0),
                        std::cmp::Reverse(**v),
                    )
                })
                .copied()
                .ok_or_else(|| ProposeError::Raft("no other voting member to lead".into()))?
        };
        self.inbox
            .send(Input::TransferLeader(target))
            .map_err(|_| ProposeError::Raft("raft thread stopped".into()))?;
        let mut status = self.status.clone();
        let me = self.id;
        let led = tokio::time::timeout(
            timeout,
            status.wait_for(|s| s.leader != me && s.leader != 0),
        )
        .await
        .ok()
        .and_then(|r| r.ok().map(|s| s.leader));
        led.ok_or_else(|| {
            ProposeError::Raft(format!(
                "controller {target} did not take over within {timeout:?} (is it caught up and reachable?)"
            ))
        })
    }

    pub fn status(&self) -> RaftStatus {
        self.status.borrow().clone()
    }

    /// Leader, and caught up with everything committed before its term.
    pub fn is_leader(&self) -> bool {
        let s = self.status.borrow();
        s.leader == self.id && s.serving
    }

    pub fn leader_addr(&self) -> Option<(u64, String)> {
        let leader = self.status.borrow().leader;
        self.peers().get(&leader).map(|a| (leader, a.clone()))
    }

    pub fn peers(&self) -> BTreeMap<u64, String> {
        self.peers.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Proposes a membership change and waits until it is applied here.
    pub async fn change_members(
        &self,
        cc: ConfChangeV2,
        addrs: BTreeMap<u64, String>,
        timeout: Duration,
    ) -> Result<(), ProposeError> {
        let (reply, rx) = oneshot::channel();
        self.inbox
            .send(Input::ConfChange { cc, addrs, reply })
            .map_err(|_| ProposeError::Raft("raft thread stopped".into()))?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            _ => Err(ProposeError::Dropped),
        }
    }
}
