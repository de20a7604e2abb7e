//! Submit-time checks of the `docker run` flags that only the container
//! sees (`--hostname`, `--ulimit`, `--label`, `--cap-add/--cap-drop`,
//! `--expose`, `--gpus all`) and of CPU and memory against the cluster's
//! hosts. The server checks them itself: a client that skipped the CLI's
//! checks gets the same answer, before anything is written.

use berth_proto::size::ULIMITS;
use berth_proto::v1::JobSpec;

use crate::scheduler::explain::bytes;
use crate::state::State;
use crate::{Error, Reason, Result};

/// The most labels a job may set, and their size: they ride in every
/// allocation sent to the agent.
const MAX_LABELS: usize = 64;
const MAX_LABEL_BYTES: usize = 4096;

pub fn docker_flags(spec: &JobSpec) -> Result<()> {
    let bad = |m: String| Err(Error::InvalidArgument(m));
    if !matches!(spec.network.as_str(), "" | "bridge" | "host" | "none") {
        return bad(format!(
            "--network {:?}: use bridge, host or none",
            spec.network
        ));
    }
    if !matches!(
        spec.ipc.as_str(),
        "" | "private" | "shareable" | "host" | "none"
    ) {
        return bad(format!(
            "--ipc {:?}: use private, shareable, host or none",
            spec.ipc
        ));
    }
    for d in &spec.devices {
        device(d)?;
    }
    if !spec.run_as.is_empty() && !valid_user(&spec.run_as) {
        return bad(format!(
            "-u {:?}: give UID[:GID] or NAME[:GROUP], e.g. -u 1000:1000",
            spec.run_as
        ));
    }
    if !spec.hostname.is_empty() && !valid_hostname(&spec.hostname) {
        return bad(format!(
            "--hostname {:?}: use letters, digits, '-' and '.', at most 253 characters, not starting or ending with '-' or '.'",
            spec.hostname
        ));
    }
    for u in &spec.ulimits {
        if !ULIMITS.contains(&u.name.as_str()) {
            return bad(format!(
                "--ulimit {}: unknown limit; one of {}",
                u.name,
                ULIMITS.join(", ")
            ));
        }
        if u.soft < -1 || u.hard < -1 || (u.hard != -1 && (u.soft == -1 || u.soft > u.hard)) {
            return bad(format!(
                "--ulimit {}={}:{}: limits are numbers from -1 (unlimited), the soft one no higher than the hard one",
                u.name, u.soft, u.hard
            ));
        }
    }
    if spec.labels.len() > MAX_LABELS {
        return bad(format!(
            "{} labels: at most {MAX_LABELS} per job",
            spec.labels.len()
        ));
    }
    for (k, v) in &spec.labels {
        if k.is_empty() || k.len() + v.len() > MAX_LABEL_BYTES {
            return bad(format!(
                "--label {k:?}: a label needs a key, and at most {MAX_LABEL_BYTES} bytes in all"
            ));
        }
        if k.starts_with("berth.") {
            return bad(format!(
                "--label {k}: keys starting with \"berth.\" are Berth's own (they say which job a container is)"
            ));
        }
    }
    for (flag, caps) in [("--cap-add", &spec.cap_add), ("--cap-drop", &spec.cap_drop)] {
        if let Some(c) = caps.iter().find(|c| !valid_capability(c)) {
            return bad(format!(
                "{flag} {c:?}: give a capability name such as NET_ADMIN or SYS_PTRACE (or ALL)"
            ));
        }
    }
    for e in &spec.expose {
        crate::core::wire::parse_expose(e)?;
    }
    if spec.publish_all && spec.expose.is_empty() {
        return bad(
            "-P publishes the image's EXPOSE ports and those given with --expose, and there are none: add --expose PORT"
                .into(),
        );
    }
    if spec.gpus_all {
        if spec.gpus > 0 {
            return bad("--gpus all and a number of GPUs together: give one".into());
        }
        if spec.gpu_memory_bytes > 0 {
            return bad(
                "--gpus all takes every GPU of a host whatever its memory: drop --gpu-mem, or ask for a number of GPUs"
                    .into(),
            );
        }
    }
    Ok(())
}

/// Refuses CPU or memory no host has: such a job would wait forever.
pub fn host_resources(spec: &JobSpec, state: &State) -> Result<()> {
    let millicpus = spec.nano_cpus.div_ceil(1_000_000);
    if millicpus > 0 {
        let most = state.nodes.values().map(|n| n.millicpus).max().unwrap_or(0);
        // Hosts that reported none are not counted, and not refused for.
        if most > 0 && state.nodes.values().all(|n| n.millicpus > 0) && millicpus > most {
            return Err(Error::refused(
                Reason::NoHostFits,
                format!(
                    "--cpus {}: no host has that many CPUs; the largest has {}",
                    millicpus as f64 / 1000.0,
                    most as f64 / 1000.0
                ),
            ));
        }
    }
    if spec.memory_bytes > 0 {
        let most = state
            .nodes
            .values()
            .map(|n| n.memory_bytes)
            .max()
            .unwrap_or(0);
        if most > 0 && state.nodes.values().all(|n| n.memory_bytes > 0) && spec.memory_bytes > most
        {
            return Err(Error::refused(
                Reason::NoHostFits,
                format!(
                    "-m {}: no host has that much memory; the largest has {}",
                    bytes(spec.memory_bytes),
                    bytes(most)
                ),
            ));
        }
    }
    if spec.gpus_all && state.nodes.values().all(|n| n.gpus.is_empty()) {
        return Err(Error::refused(
            Reason::NoHostFits,
            "--gpus all: no host has a GPU",
        ));
    }
    Ok(())
}

/// docker's `--device HOST[:CONTAINER[:PERMS]]`: absolute paths, and
/// permissions made of r, w and m.
fn device(d: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::InvalidArgument(format!(
            "--device {d:?}: {why}; expected HOST[:CONTAINER[:PERMS]], e.g. --device /dev/infiniband/uverbs0"
        )))
    };
    let mut parts = d.splitn(3, ':');
    let host = parts.next().unwrap_or_default();
    if !host.starts_with('/') {
        return bad("the host path must be absolute");
    }
    if let Some(inside) = parts.next().filter(|s| !s.is_empty()) {
        if !inside.starts_with('/') {
            return bad("the container path must be absolute");
        }
    }
    if let Some(perms) = parts.next() {
        if perms.is_empty() || !perms.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return bad("permissions are made of r, w and m");
        }
    }
    Ok(())
}

/// `-u`: a name or number, optionally `:` a group name or number.
fn valid_user(u: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.len() <= 64
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    };
    match u.split_once(':') {
        Some((user, group)) => part(user) && part(group),
        None => part(u),
    }
}

fn valid_hostname(h: &str) -> bool {
    h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn valid_capability(c: &str) -> bool {
    let name = c.strip_prefix("CAP_").unwrap_or(c);
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'_' || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::Ulimit;

    fn spec() -> JobSpec {
        JobSpec {
            image: "x".into(),
            ..Default::default()
        }
    }

    fn refused(s: JobSpec, says: &str) {
        let e = docker_flags(&s).unwrap_err().to_string();
        assert!(e.contains(says), "{e}");
    }

    #[test]
    fn bad_docker_flags_are_refused_with_what_to_do() {
        let mut s = spec();
        s.ulimits.push(Ulimit {
            name: "nofile".into(),
            soft: 10,
            hard: 5,
        });
        refused(s, "soft one no higher");
        let mut s = spec();
        s.ulimits.push(Ulimit {
            name: "files".into(),
            soft: 1,
            hard: 1,
        });
        refused(s, "unknown limit");
        let mut s = spec();
        s.hostname = "-bad".into();
        refused(s, "--hostname");
        let mut s = spec();
        s.labels.insert("berth.job".into(), "x".into());
        refused(s, "Berth's own");
        let mut s = spec();
        s.cap_drop.push("net raw".into());
        refused(s, "capability name");
        let mut s = spec();
        s.expose.push("99999".into());
        refused(s, "1..65535");
        let mut s = spec();
        s.publish_all = true;
        refused(s, "--expose");
        let mut s = spec();
        s.gpus_all = true;
        s.gpus = 2;
        refused(s, "give one");
        let mut s = spec();
        s.devices.push("relative".into());
        refused(s, "must be absolute");
        let mut s = spec();
        s.devices.push("/dev/fuse:/dev/fuse:rwx".into());
        refused(s, "r, w and m");
        let mut s = spec();
        s.ipc = "bogus".into();
        refused(s, "--ipc");
        let mut s = spec();
        s.network = "container:x".into();
        refused(s, "--network");
        let mut s = spec();
        s.run_as = "1000:".into();
        refused(s, "UID[:GID]");
    }

    #[test]
    fn good_docker_flags_pass() {
        let mut s = spec();
        s.hostname = "rank-0.lab".into();
        s.ulimits.push(Ulimit {
            name: "memlock".into(),
            soft: -1,
            hard: -1,
        });
        s.labels.insert("team".into(), "vision".into());
        s.cap_add.push("IPC_LOCK".into());
        s.cap_drop.push("ALL".into());
        s.expose.push("8888/tcp".into());
        s.publish_all = true;
        s.gpus_all = true;
        docker_flags(&s).unwrap();
    }
}
