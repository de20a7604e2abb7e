//! Submit-time checks. Everything here runs before anything is written, so a
//! refused job leaves no trace. Messages say what to do, not just what is wrong.

use std::collections::HashSet;

use berth_proto::v1::JobSpec;

use crate::scheduler::{explain::bytes, Constraint};
use crate::state::{GpuInventory, NodeRecord, State};
use crate::{Error, Reason, Result};

/// A restart policy, for a job of `nodes` tasks (a gang when above 1).
pub fn restart(policy: &str, nodes: u32) -> Result<()> {
    match policy.split_once(':').unwrap_or((policy, "")) {
        ("" | "no" | "always" | "unless-stopped", "") | ("on-failure", "") => {}
        ("on-failure", n) if n.parse::<u32>().is_ok() => {}
        _ => {
            return Err(Error::InvalidArgument(format!(
                "--restart {policy:?}: use no, on-failure[:N], always or unless-stopped"
            )))
        }
    }
    if nodes > 1 && !matches!(policy, "" | "no") {
        return Err(Error::InvalidArgument(
            "a gang cannot have a --restart policy yet: it is torn down as a whole when a task ends"
                .into(),
        ));
    }
    Ok(())
}

/// Memory and CPU limits (0 = none), with docker's floors, so that a bad
/// value is refused here rather than by the daemon after placement.
pub fn limits(memory_bytes: u64, nano_cpus: u64) -> Result<()> {
    const MIN_MEMORY: u64 = 6 << 20;
    if memory_bytes != 0 && memory_bytes < MIN_MEMORY {
        return Err(Error::InvalidArgument(format!(
            "--memory {}: docker's minimum is 6MiB",
            bytes(memory_bytes)
        )));
    }
    if nano_cpus != 0 && nano_cpus < 10_000_000 {
        return Err(Error::InvalidArgument(
            "--cpus: the smallest limit is 0.01".into(),
        ));
    }
    Ok(())
}

/// Checks that need nothing but the spec itself.
pub fn job(spec: &JobSpec, name: &str) -> Result<()> {
    let bad = |m: String| Err(Error::InvalidArgument(m));
    if spec.image.trim().is_empty() {
        return bad("an image is required (e.g. berth run busybox:latest echo hi)".into());
    }
    if !valid_name(name) {
        return bad(format!(
            "invalid name {name:?}: use letters, digits, '_', '.', '-', starting with a letter or digit"
        ));
    }
    restart(&spec.restart, spec.nodes)?;
    limits(spec.memory_bytes, spec.nano_cpus)?;
    if spec.pids_limit < -1 {
        return bad(format!(
            "--pids-limit {}: give a positive number, or -1 for no limit",
            spec.pids_limit
        ));
    }
    for m in &spec.mounts {
        if !m.source.starts_with('/') {
            return bad(format!(
                "mount source {:?} must be an absolute host path",
                m.source
            ));
        }
        if !m.target.starts_with('/') || m.target == "/" {
            return bad(format!(
                "mount target {:?} must be an absolute path inside the container, not /",
                m.target
            ));
        }
    }
    let mut host_ports = HashSet::new();
    for p in &spec.ports {
        // Host port 0: Berth picks one (`-p 8080`).
        if p.host_port > 65535 || !(1..=65535).contains(&p.container_port) {
            return bad(format!(
                "port mapping {}:{} is out of range: ports are 1..65535 (a host port of 0 lets Berth pick one)",
                p.host_port, p.container_port
            ));
        }
        let proto = if p.protocol.is_empty() {
            "tcp"
        } else {
            p.protocol.as_str()
        };
        if proto != "tcp" && proto != "udp" {
            return bad(format!("port protocol {proto:?} is not tcp or udp"));
        }
        if p.host_port != 0 && !host_ports.insert((p.host_port, proto.to_string())) {
            return bad(format!(
                "host port {}/{proto} is published twice",
                p.host_port
            ));
        }
        if !p.host_ip.is_empty() && p.host_ip.parse::<std::net::IpAddr>().is_err() {
            return bad(format!("host ip {:?} is not an IP address", p.host_ip));
        }
    }
    for e in &spec.env {
        if e.split_once('=').is_none_or(|(k, _)| k.is_empty()) {
            return bad(format!("environment entry {e:?} must look like KEY=VALUE"));
        }
    }
    for c in &spec.constraints {
        if Constraint::parse(c).is_none() {
            return bad(format!(
                "constraint {c:?} must look like key=value or key!=value"
            ));
        }
    }
    if !(-1000..=1000).contains(&spec.priority) {
        return bad(format!(
            "priority {} is out of range: use -1000..1000",
            spec.priority
        ));
    }
    if spec.master_port > 65535 {
        return bad(format!(
            "master port {} is out of range: ports are 1..65535",
            spec.master_port
        ));
    }
    super::validate_run::docker_flags(spec)?;
    groups(spec)
}

/// What a submit fills in before any check: a gang left on the default
/// network runs on the host network, where its ranks on different hosts
/// reach each other directly (NCCL needs that; docker's bridge NAT breaks
/// it). The policy then decides whether the owner may have it.
pub fn defaults(spec: &mut JobSpec) {
    if spec.nodes > 1 && spec.network.is_empty() {
        spec.network = "host".into();
    }
}

/// Largest gang, and most tasks in one array.
pub const MAX_GANG: u32 = 1024;
pub const MAX_ARRAY: u32 = 10_000;

fn groups(spec: &JobSpec) -> Result<()> {
    let bad = |m: String| Err(Error::InvalidArgument(m));
    if spec.nodes > MAX_GANG {
        return bad(format!(
            "--nodes {} is out of range: a gang has 2..{MAX_GANG} tasks",
            spec.nodes
        ));
    }
    if spec.nodes > 1 {
        if spec.array.is_some() {
            return bad("--nodes and --array cannot be combined: submit an array of single jobs, or one gang".into());
        }
        if spec.preemptible {
            return bad(
                "a gang cannot be --preemptible (stopping one task stops the whole gang)".into(),
            );
        }
    }
    if let Some(a) = &spec.array {
        if a.end < a.start {
            return bad(format!(
                "--array {}-{}: the end is before the start",
                a.start, a.end
            ));
        }
        let n = a.end - a.start + 1;
        if n > MAX_ARRAY {
            return bad(format!(
                "--array {}-{} has {n} tasks; at most {MAX_ARRAY} per array",
                a.start, a.end
            ));
        }
    }
    Ok(())
}

/// Checks against the cluster: a GPU count some host can give, an image some
/// host holds, a name no live job uses.
pub fn against_cluster(spec: &JobSpec, state: &State, image: ImageSeen) -> Result<()> {
    if state.nodes.is_empty() {
        return Err(Error::refused(
            Reason::NoNodes,
            "the cluster has no nodes yet: start `berth-agent` on a GPU host (or use `berth dev`)",
        ));
    }
    if !spec.gpus_all {
        hosts_for(spec, state)?;
    }
    super::validate_run::host_resources(spec, state)?;
    quota(spec, state)?;
    if image == ImageSeen::Nowhere {
        return Err(Error::refused(Reason::ImageNotFound, format!(
            "image {:?} exists on no host (Berth pulls from no registry): build or `docker load` it on a host first; `berth images` lists what each host has",
            spec.image
        )));
    }
    Ok(())
}

/// A job that needs more whole GPUs at once than its user's quota would
/// wait forever: refused, as a Kubernetes ResourceQuota refuses a pod.
fn quota(spec: &JobSpec, state: &State) -> Result<()> {
    if let Some(&(cpu_q, mem_q)) = state.host_quotas.get(&spec.user) {
        let tasks = u64::from(spec.nodes.max(1));
        let cpus = spec.nano_cpus.div_ceil(1_000_000) * tasks;
        if cpu_q > 0 && cpus > cpu_q {
            return Err(Error::refused(
                Reason::QuotaExceeded,
                format!(
                    "the job holds {} CPUs at once but {}'s CPU quota is {}: ask for fewer, or ask an admin to raise it",
                    cpus as f64 / 1000.0,
                    spec.user,
                    cpu_q as f64 / 1000.0
                ),
            ));
        }
        if mem_q > 0 && spec.memory_bytes * tasks > mem_q {
            return Err(Error::refused(
                Reason::QuotaExceeded,
                format!(
                    "the job holds {} of memory at once but {}'s memory quota is {}: ask for less, or ask an admin to raise it",
                    bytes(spec.memory_bytes * tasks),
                    spec.user,
                    bytes(mem_q)
                ),
            ));
        }
    }
    let Some(&quota) = state.quotas.get(&spec.user) else {
        return Ok(());
    };
    // A gang holds all its tasks' GPUs at once; an array's tasks run apart.
    let needed = spec.gpus * spec.nodes.max(1);
    if needed > quota {
        return Err(Error::refused(
            Reason::QuotaExceeded,
            format!(
                "the job needs {needed} GPUs at once but {}'s quota is {quota}: ask for fewer, or ask an admin to raise it (berth quota set {} {needed})",
                spec.user, spec.user
            ),
        ));
    }
    Ok(())
}

/// Whether some host reported holding the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageSeen {
    Somewhere,
    /// Every host reported, none has it.
    Nowhere,
    /// Not found, but some host has not reported yet: it may have it.
    Unknown,
}

/// `needle` (already lowercase) in `hay`, ignoring ASCII case, without allocating:
/// this runs for every GPU of every host on every submit.
fn contains_ci(hay: &str, needle: &str) -> bool {
    needle.is_empty()
        || hay
            .as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Refuses a request no host could ever satisfy, saying which part fails:
/// labels, GPU model, GPU memory, GPU count, or (for a gang) host count.
/// The common case (some host qualifies) stops at the first hosts that do.
fn hosts_for(spec: &JobSpec, state: &State) -> Result<()> {
    let constraints: Vec<Constraint> = spec
        .constraints
        .iter()
        .filter_map(|c| Constraint::parse(c))
        .collect();
    let model = spec.gpu_model.to_lowercase();
    let need = (spec.gpus as usize).max(usize::from(spec.gpu_memory_bytes > 0));
    let qualifies = |n: &NodeRecord| {
        constraints.iter().all(|c| c.holds(&n.labels))
            && n.gpus
                .iter()
                .filter(|g| {
                    contains_ci(&g.model, &model) && g.memory_total_bytes >= spec.gpu_memory_bytes
                })
                .count()
                >= need
    };
    let wanted = (spec.nodes as usize).max(1);
    let qualifying = state
        .nodes
        .values()
        .filter(|n| qualifies(n))
        .take(wanted)
        .count();
    if qualifying >= wanted {
        return Ok(());
    }
    refusal(spec, state, &constraints, &model, qualifying)
}

/// Says why no (or too few) hosts qualify, most basic reason first.
fn refusal(
    spec: &JobSpec,
    state: &State,
    constraints: &[Constraint],
    model: &str,
    qualifying: usize,
) -> Result<()> {
    let nope = |m: String| Err(Error::refused(Reason::NoHostFits, m));
    let labelled: Vec<&NodeRecord> = state
        .nodes
        .values()
        .filter(|n| constraints.iter().all(|c| c.holds(&n.labels)))
        .collect();
    if labelled.is_empty() {
        return nope(format!(
            "no host matches --constraint {}; `berth nodes --output json` shows each host's labels",
            spec.constraints.join(" --constraint ")
        ));
    }
    let of_model = |g: &&GpuInventory| contains_ci(&g.model, model);
    if !model.is_empty() && !labelled.iter().any(|n| n.gpus.iter().any(|g| of_model(&g))) {
        let mut models: Vec<&str> = state
            .nodes
            .values()
            .flat_map(|n| n.gpus.iter().map(|g| g.model.as_str()))
            .collect();
        models.sort();
        models.dedup();
        return nope(format!(
            "no host has a {} GPU; the models here are: {}",
            spec.gpu_model,
            models.join(", ")
        ));
    }
    let largest_mem = labelled
        .iter()
        .flat_map(|n| n.gpus.iter().filter(of_model))
        .map(|g| g.memory_total_bytes)
        .max()
        .unwrap_or(0);
    if spec.gpu_memory_bytes > largest_mem {
        return nope(format!(
            "no GPU has {} of memory: the largest{} has {}",
            bytes(spec.gpu_memory_bytes),
            if model.is_empty() {
                String::new()
            } else {
                format!(" {}", spec.gpu_model)
            },
            bytes(largest_mem)
        ));
    }
    let fits = |n: &&&NodeRecord| {
        n.gpus
            .iter()
            .filter(of_model)
            .filter(|g| g.memory_total_bytes >= spec.gpu_memory_bytes)
            .count()
            >= spec.gpus as usize
    };
    if qualifying == 0 || labelled.iter().filter(fits).count() == 0 {
        let (host, largest) = labelled
            .iter()
            .map(|n| (n.name.as_str(), n.gpus.iter().filter(of_model).count()))
            .max_by_key(|(_, c)| *c)
            .unwrap_or(("", 0));
        return nope(format!(
            "no host has {} GPUs{}: the largest host ({host}) has {largest}; ask for --gpus {largest} or fewer",
            spec.gpus,
            if model.is_empty() { String::new() } else { format!(" of model {}", spec.gpu_model) },
        ));
    }
    if spec.nodes > 1 && qualifying < spec.nodes as usize {
        return nope(format!(
            "a gang of {} needs {} hosts with {} GPUs each; only {qualifying} host(s) qualify",
            spec.nodes, spec.nodes, spec.gpus
        ));
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && name.len() <= 128
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{Mount, PortMapping};

    fn spec() -> JobSpec {
        JobSpec {
            image: "busybox:latest".into(),
            ..Default::default()
        }
    }

    #[test]
    fn refuses_relative_mounts_bad_ports_and_env() {
        let mut s = spec();
        s.mounts.push(Mount {
            source: "data".into(),
            target: "/data".into(),
            read_only: false,
        });
        assert!(job(&s, "a")
            .unwrap_err()
            .to_string()
            .contains("absolute host path"));
        let mut s = spec();
        s.ports.push(PortMapping {
            host_port: 70000,
            container_port: 80,
            ..Default::default()
        });
        assert!(job(&s, "a")
            .unwrap_err()
            .to_string()
            .contains("out of range"));
        let mut s = spec();
        s.env.push("=x".into());
        assert!(job(&s, "a").unwrap_err().to_string().contains("KEY=VALUE"));
        assert!(job(&spec(), "-bad").is_err());
        assert!(job(&spec(), "good_name-1.x").is_ok());
    }

    #[test]
    fn refuses_more_gpus_than_the_largest_host_and_unknown_images() {
        let mut state = State::default();
        for (name, n) in [("a", 2), ("b", 4)] {
            state.nodes.insert(
                name.into(),
                crate::state::NodeRecord {
                    name: name.into(),
                    agent_addr: String::new(),
                    gpu_backend: crate::state::GpuBackend::Simulated,
                    gpus: (0..n)
                        .map(|i| crate::state::GpuInventory {
                            index: i,
                            uuid: format!("{name}{i}"),
                            model: "m".into(),
                            memory_total_bytes: 1,
                            ..Default::default()
                        })
                        .collect(),
                    docker_version: String::new(),
                    ..Default::default()
                },
            );
        }
        let mut s = spec();
        s.gpus = 5;
        let err = against_cluster(&s, &state, ImageSeen::Somewhere)
            .unwrap_err()
            .to_string();
        assert!(err.contains("largest host (b) has 4"), "{err}");
        s.gpus = 4;
        assert!(against_cluster(&s, &state, ImageSeen::Somewhere).is_ok());
        let err = against_cluster(&s, &state, ImageSeen::Nowhere)
            .unwrap_err()
            .to_string();
        assert!(err.contains("exists on no host"), "{err}");
        // A node that has not reported yet might hold it: do not refuse.
        assert!(against_cluster(&s, &state, ImageSeen::Unknown).is_ok());
        // Each refusal names its reason for programs.
        s.gpus = 5;
        let e = against_cluster(&s, &state, ImageSeen::Somewhere).unwrap_err();
        assert_eq!(e.reason(), "NO_HOST_FITS");
        s.gpus = 1;
        let e = against_cluster(&s, &state, ImageSeen::Nowhere).unwrap_err();
        assert_eq!(e.reason(), "IMAGE_NOT_FOUND");
        let e = against_cluster(&s, &State::default(), ImageSeen::Somewhere).unwrap_err();
        assert_eq!(e.reason(), "NO_NODES");
    }

    #[test]
    fn a_job_over_its_users_quota_is_refused_not_left_waiting() {
        let mut state = State::default();
        for name in ["a", "b", "c"] {
            state.nodes.insert(
                name.into(),
                crate::state::NodeRecord {
                    name: name.into(),
                    gpus: (0..8)
                        .map(|i| crate::state::GpuInventory {
                            index: i,
                            uuid: format!("{name}{i}"),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                },
            );
        }
        state.quotas.insert("alice".into(), 2);
        let mut s = spec();
        s.user = "alice".into();
        s.gpus = 2;
        assert!(against_cluster(&s, &state, ImageSeen::Somewhere).is_ok());
        s.gpus = 3;
        let e = against_cluster(&s, &state, ImageSeen::Somewhere).unwrap_err();
        assert_eq!(e.reason(), "QUOTA_EXCEEDED");
        assert!(e.to_string().contains("alice's quota is 2"), "{e}");
        // An array's tasks run apart: each within the quota is fine; a gang
        // holds all its tasks' GPUs at once.
        s.gpus = 1;
        s.array = Some(berth_proto::v1::ArrayRange {
            start: 0,
            end: 9,
            max_running: 0,
        });
        assert!(against_cluster(&s, &state, ImageSeen::Somewhere).is_ok());
        s.array = None;
        s.nodes = 3;
        assert_eq!(
            against_cluster(&s, &state, ImageSeen::Somewhere)
                .unwrap_err()
                .reason(),
            "QUOTA_EXCEEDED"
        );
        // Someone else's jobs are not counted against her.
        s.user = "bob".into();
        assert!(against_cluster(&s, &state, ImageSeen::Somewhere).is_ok());
    }
}
