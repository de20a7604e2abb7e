//! The commands of the replicated log, what applying one changed, and why
//! applying one may be refused.

use serde::{Deserialize, Serialize};

use super::access::TokenRecord;
use super::records::{NodeRecord, Placement};
use super::spec::{JobSpec, RestartPolicy};

/// Everything that changes the state goes through the log as one of these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// First command of a new cluster's log.
    Init {
        cluster_id: String,
    },
    RegisterNode(NodeRecord),
    Submit {
        id: String,
        name: String,
        // Boxed: a spec is far bigger than every other command.
        spec: Box<JobSpec>,
        at_ms: i64,
        /// Client-chosen idempotency key; empty for none.
        #[serde(default)]
        request_id: String,
    },
    Place {
        placements: Vec<Placement>,
        /// Jobs to stop and requeue to make room (applied first).
        #[serde(default)]
        preemptions: Vec<String>,
    },
    /// Sets (Some) or removes (None) a user's whole-GPU quota.
    SetQuota {
        user: String,
        gpus: Option<u32>,
        /// Format 6: (thousandths of a core, bytes) at once; 0 in one is no
        /// limit on it. Absent: none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cpus_memory: Option<(u64, u64)>,
    },
    /// The job's node lacks its image and is receiving it (PLACED → PULLING).
    Pulling {
        job_id: String,
    },
    Started {
        job_id: String,
        container_id: String,
        at_ms: i64,
    },
    Exited {
        job_id: String,
        exit_code: i32,
        at_ms: i64,
    },
    Failed {
        job_id: String,
        message: String,
        at_ms: i64,
    },
    Cancel {
        job_id: String,
        at_ms: i64,
    },
    /// Drops jobs that finished before `before_ms` (a group only once all
    /// its tasks did), with their request ids: the leader's retention, so
    /// the state, snapshots and `ps -a` do not grow forever.
    Forget {
        before_ms: i64,
    },
    /// `berth update`: new limits or restart policy (0 / `None`: unchanged).
    Update {
        job_id: String,
        memory_bytes: u64,
        nano_cpus: u64,
        #[serde(with = "super::spec::update_policy")]
        restart: Option<RestartPolicy>,
    },
    /// Adds a token (only its hash: the secret is never in the log).
    CreateToken(TokenRecord),
    /// Removes tokens: they stop working at the next request.
    RevokeTokens {
        ids: Vec<String>,
    },
    /// Replaces the mount and privilege policy.
    SetPolicy(berth_proto::policy::Policy),
    /// A one-time join token was used: it is gone.
    UseJoinToken {
        id: String,
    },
    /// An admin's cordon (no new placements), or a drain when
    /// `drain_deadline_ms` is set: at that time what still runs there is
    /// evicted (the leader proposes `Evict`).
    Cordon {
        node: String,
        drain_deadline_ms: Option<i64>,
        at_ms: i64,
    },
    /// Ends a cordon or drain.
    Uncordon {
        node: String,
    },
    /// Stops jobs for `reason` (a drain's deadline): those with a restart
    /// policy are requeued (placed elsewhere), the others end cancelled.
    Evict {
        job_ids: Vec<String>,
        reason: String,
    },
    /// Forgets a node; jobs still holding resources there fail.
    RemoveNode {
        node: String,
        at_ms: i64,
    },
    /// The job's host stopped reporting for `--node-lost-after`: the job
    /// fails or restarts elsewhere, as its `on_host_lost` says.
    Lost {
        job_id: String,
        message: String,
        at_ms: i64,
    },
    /// Folds the usage ledger's runs that ended before `before_ms` into
    /// per-day sums (the leader's `--usage-detail`). Format 5.
    CompactUsage {
        before_ms: i64,
    },
}

/// Why `apply` refused a command. Refusals are deterministic too, so every
/// replica refuses the same commands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("no such job {0}")]
    NoSuchJob(String),
    #[error("no such node {0}")]
    NoSuchNode(String),
    #[error("job id {0} already exists")]
    DuplicateId(String),
    #[error("the name {0:?} is already used by live job {1}; stop it or choose another --name")]
    NameInUse(String, String),
    #[error("job {0} is {1} and cannot {2}")]
    BadTransition(String, &'static str, &'static str),
    #[error("placement of {job} refused: {why}")]
    BadPlacement { job: String, why: String },
    #[error("job {job} cannot be updated: {why}")]
    BadUpdate { job: String, why: String },
    #[error(
        "join token {0} was already used (join tokens are one-time: ask an admin for another)"
    )]
    TokenUsed(String),
    #[error("undecodable command: {0}")]
    Malformed(String),
}

/// What applying one command changed: the jobs whose state moved, for events,
/// waiters and the scheduler.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Applied {
    pub jobs: Vec<String>,
    pub node: Option<String>,
    /// Placements refused by the re-check (the rest of a plan still applies).
    pub rejected: Vec<Rejection>,
}
