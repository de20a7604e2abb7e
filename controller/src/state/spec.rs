//! What a job is, as the replicated log records it: the state's own types,
//! not the public API's. The API's `berth.v1.JobSpec` may rename a field or
//! grow one freely; these change only with a new log format version
//! (`format`), because every controller replays them from old logs.
//!
//! Their serde form is the log's: field and variant names are frozen. It
//! matches what format version 1 wrote with the API's types.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

fn is_false(b: &bool) -> bool {
    !*b
}

/// A job's request: the cluster-wide equivalent of a `docker run` line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobSpec {
    pub image: String,
    pub command: Vec<String>,
    pub entrypoint: Vec<String>,
    pub env: Vec<String>,
    pub mounts: Vec<Mount>,
    pub ports: Vec<PortMapping>,
    pub shm_size_bytes: u64,
    /// Whole GPUs, all on one host.
    pub gpus: u32,
    pub workdir: String,
    pub tty: bool,
    pub stdin: bool,
    pub gpu_model: String,
    /// With gpus > 0: the least free memory per GPU; with gpus = 0: a
    /// shared slice of one GPU.
    pub gpu_memory_bytes: u64,
    /// "key=value" or "key!=value" node label constraints.
    pub constraints: Vec<String>,
    pub exclusive: bool,
    pub priority: i32,
    pub preemptible: bool,
    /// Who owns the job and is charged for it (fair share, quotas,
    /// ownership): the authenticated caller at submit, never the client's say.
    pub user: String,
    /// The owner's role at submit (the agent re-checks the policy for it).
    /// The fields from here on are left out of the log when empty, so
    /// entries and snapshots do not grow for what most jobs never ask.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub role: String,
    /// Gang size; 0 or 1 for a single job.
    pub nodes: u32,
    pub master_port: u32,
    pub array: Option<ArrayRange>,
    pub restart: RestartPolicy,
    pub memory_bytes: u64,
    pub nano_cpus: u64,
    /// docker's `-u`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub run_as: String,
    #[serde(skip_serializing_if = "is_false")]
    pub privileged: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub network: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ipc: String,
    /// What losing its host means (`--on-host-lost`).
    #[serde(skip_serializing_if = "OnHostLost::is_auto")]
    pub on_host_lost: OnHostLost,
    /// docker's `--pids-limit`: -1 unlimited, 0 the host's default.
    #[serde(skip_serializing_if = "is_zero")]
    pub pids_limit: i64,
    // Version 6: more of docker run. Absent in older entries, as empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<Ulimit>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// docker's `--rm`.
    #[serde(skip_serializing_if = "is_false")]
    pub auto_remove: bool,
    /// docker's `--expose` ("8080/tcp"): marked exposed; with `-P`, the
    /// submit turned them into `ports` with host port 0.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expose: Vec<String>,
    /// docker's `--gpus all`: every GPU of one host.
    #[serde(skip_serializing_if = "is_false")]
    pub gpus_all: bool,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// docker's `--ulimit NAME=SOFT[:HARD]`; -1 is unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// What losing a job's host means: the controller's side of fencing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnHostLost {
    /// `Restart` with a restart policy, else `Fail`.
    #[default]
    Auto,
    /// The job fails (its agent stopped it when it lost the controllers).
    Fail,
    /// A new attempt elsewhere, whatever the restart policy says.
    Restart,
    /// Kept as it is until the host returns (it runs on, unfenced), then adopted.
    Wait,
}

impl OnHostLost {
    fn is_auto(&self) -> bool {
        *self == OnHostLost::Auto
    }

    /// `fail`, `restart`, `wait`; empty is `Auto`.
    pub fn parse(s: &str) -> Option<OnHostLost> {
        Some(match s {
            "" => OnHostLost::Auto,
            "fail" => OnHostLost::Fail,
            "restart" => OnHostLost::Restart,
            "wait" => OnHostLost::Wait,
            _ => return None,
        })
    }

    pub fn word(&self) -> &'static str {
        match self {
            OnHostLost::Auto => "",
            OnHostLost::Fail => "fail",
            OnHostLost::Restart => "restart",
            OnHostLost::Wait => "wait",
        }
    }

    /// `Auto` resolved against the job's restart policy.
    pub fn resolve(&self, restart: &RestartPolicy) -> OnHostLost {
        match self {
            OnHostLost::Auto if *restart == RestartPolicy::No => OnHostLost::Fail,
            OnHostLost::Auto => OnHostLost::Restart,
            other => *other,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Mount {
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PortMapping {
    pub host_ip: String,
    pub host_port: u32,
    pub container_port: u32,
    /// "tcp" (also when empty) or "udp".
    pub protocol: String,
}

/// Indexes start..=end, at most `max_running` holding resources (0: no cap).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ArrayRange {
    pub start: u32,
    pub end: u32,
    pub max_running: u32,
}

/// A GPU held by a job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct GpuRef {
    pub index: u32,
    pub uuid: String,
}

/// Where a job is in its life. The state machine owns the transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobState {
    /// Waiting for resources: nothing is held.
    Queued,
    /// Resources reserved on a node; its agent creates the container.
    Placed,
    /// Resources reserved on a node that is receiving the job's image.
    Pulling,
    Running,
    /// A stop was asked; resources stay held until the container is gone.
    Stopping,
    Exited,
    Failed,
    Cancelled,
}

impl JobState {
    /// Lower-case word for tables, logs and messages.
    pub fn word(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Placed => "placed",
            JobState::Pulling => "pulling",
            JobState::Running => "running",
            JobState::Stopping => "stopping",
            JobState::Exited => "exited",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// A finished job holds nothing and never changes again.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Exited | JobState::Failed | JobState::Cancelled
        )
    }

    /// Placed, pulling, running or stopping: it holds GPUs and host ports.
    pub fn holds_resources(self) -> bool {
        matches!(
            self,
            JobState::Placed | JobState::Pulling | JobState::Running | JobState::Stopping
        )
    }

    /// Queued or holding resources: the job's name is taken.
    pub fn is_live(self) -> bool {
        self == JobState::Queued || self.holds_resources()
    }
}

/// Docker's `--restart`, parsed once at the API's edge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RestartPolicy {
    #[default]
    No,
    /// Again after a non-zero exit (or a failure after it ran), at most
    /// `max` times (`None` or 0: no limit).
    OnFailure {
        max: Option<u32>,
    },
    Always,
    UnlessStopped,
}

impl RestartPolicy {
    /// Docker's spelling: "no" (or empty), "on-failure[:N]", "always",
    /// "unless-stopped".
    pub fn parse(s: &str) -> Option<RestartPolicy> {
        Some(match s.split_once(':').unwrap_or((s, "")) {
            ("" | "no", "") => RestartPolicy::No,
            ("always", "") => RestartPolicy::Always,
            ("unless-stopped", "") => RestartPolicy::UnlessStopped,
            ("on-failure", "") => RestartPolicy::OnFailure { max: None },
            ("on-failure", n) => RestartPolicy::OnFailure {
                max: Some(n.parse().ok()?),
            },
            _ => return None,
        })
    }

    /// As a job spec spells it: empty for no policy, docker's words else.
    pub fn as_spec(self) -> String {
        match self {
            RestartPolicy::No => String::new(),
            RestartPolicy::OnFailure { max: None } => "on-failure".into(),
            RestartPolicy::OnFailure { max: Some(n) } => format!("on-failure:{n}"),
            RestartPolicy::Always => "always".into(),
            RestartPolicy::UnlessStopped => "unless-stopped".into(),
        }
    }

    /// Whether a job that ended (`code`: its exit code; `None`: its
    /// container failed or vanished after running) is started again, after
    /// `restarts` restarts so far.
    pub fn restarts_again(self, code: Option<i32>, restarts: u32) -> bool {
        match self {
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
            RestartPolicy::OnFailure { max } => {
                code != Some(0) && max.is_none_or(|m| m == 0 || restarts < m)
            }
            RestartPolicy::No => false,
        }
    }
}

impl Serialize for RestartPolicy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_spec())
    }
}

impl<'de> Deserialize<'de> for RestartPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RestartPolicy::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown restart policy {s:?}")))
    }
}

/// `Command::Update`'s policy: empty leaves the job's as it is; "no" sets
/// no policy.
pub mod update_policy {
    use super::RestartPolicy;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(p: &Option<RestartPolicy>, s: S) -> Result<S::Ok, S::Error> {
        match p {
            None => s.serialize_str(""),
            Some(RestartPolicy::No) => s.serialize_str("no"),
            Some(p) => s.serialize_str(&p.as_spec()),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RestartPolicy>, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            return Ok(None);
        }
        RestartPolicy::parse(&s)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown restart policy {s:?}")))
    }
}

/// Where a node's GPU inventory comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuBackend {
    /// Real GPUs through the NVIDIA driver.
    Nvml,
    /// GPUs from the agent's configuration (no driver).
    #[default]
    Simulated,
}

impl GpuBackend {
    pub fn word(self) -> &'static str {
        match self {
            GpuBackend::Nvml => "nvml",
            GpuBackend::Simulated => "simulated",
        }
    }
}

/// A shared-GPU job: no whole GPUs, a memory slice of one.
pub fn is_slice(spec: &JobSpec) -> bool {
    spec.gpus == 0 && !spec.gpus_all && spec.gpu_memory_bytes > 0
}

/// The rendezvous port of a gang on the host network: every task's host
/// holds one (rank 0's is MASTER_PORT), so two gangs on one host never
/// clash. `Some(0)`: Berth picks it.
pub fn rendezvous_port(spec: &JobSpec) -> Option<u32> {
    (spec.nodes > 1 && spec.network == "host").then_some(spec.master_port)
}

/// What a job publishes on its host: its `-p` mappings, then a host
/// network gang's rendezvous port, each with the host port Berth picked
/// (`picked`, in order of the zeros) filled in.
pub fn published(spec: &JobSpec, picked: &[u32]) -> Vec<PortMapping> {
    let mut picked = picked.iter().copied();
    let mut fill = |p: u32| {
        if p == 0 {
            picked.next().unwrap_or(0)
        } else {
            p
        }
    };
    let mut out: Vec<PortMapping> = spec
        .ports
        .iter()
        .map(|p| PortMapping {
            host_port: fill(p.host_port),
            ..p.clone()
        })
        .collect();
    if let Some(port) = rendezvous_port(spec) {
        let port = fill(port);
        out.push(PortMapping {
            host_ip: String::new(),
            host_port: port,
            container_port: port,
            protocol: "tcp".into(),
        });
    }
    out
}

/// The protocols of the host ports Berth must pick for `spec`, in order.
pub fn ports_to_pick(spec: &JobSpec) -> Vec<String> {
    spec.ports
        .iter()
        .filter(|p| p.host_port == 0)
        .map(|p| super::norm_proto(&p.protocol))
        .chain((rendezvous_port(spec) == Some(0)).then(|| "tcp".to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies_parse_and_print_as_docker_spells_them() {
        for s in ["on-failure", "on-failure:3", "always", "unless-stopped", ""] {
            assert_eq!(RestartPolicy::parse(s).unwrap().as_spec(), s);
        }
        assert_eq!(RestartPolicy::parse("no"), Some(RestartPolicy::No));
        for bad in ["sometimes", "on-failure:x", "always:2", "no:1"] {
            assert_eq!(RestartPolicy::parse(bad), None, "{bad}");
        }
        let p = RestartPolicy::OnFailure { max: Some(2) };
        assert!(p.restarts_again(Some(1), 1) && !p.restarts_again(Some(1), 2));
        assert!(!p.restarts_again(Some(0), 0));
        assert!(RestartPolicy::OnFailure { max: Some(0) }.restarts_again(None, 99));
        assert!(RestartPolicy::Always.restarts_again(Some(0), 99));
        assert!(!RestartPolicy::No.restarts_again(Some(1), 0));
    }
}
