//! Submit-time checks. Everything here runs before anything is written, so a
//! refused job leaves no trace. Messages say what to do, not just what is wrong.

use std::collections::HashSet;

use berth_proto::v1::JobSpec;

use crate::scheduler::has_image;
use crate::state::State;
use crate::{Error, Result};

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
        if !(1..=65535).contains(&p.host_port) || !(1..=65535).contains(&p.container_port) {
            return bad(format!(
                "port mapping {}:{} is out of range: ports are 1..65535",
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
        if !host_ports.insert((p.host_port, proto.to_string())) {
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
    Ok(())
}

/// Checks against the cluster: a GPU count some host can give, an image some
/// host holds, a name no live job uses.
pub fn against_cluster(
    spec: &JobSpec,
    state: &State,
    images: &[(String, Option<HashSet<String>>)],
) -> Result<()> {
    if state.nodes.is_empty() {
        return Err(Error::FailedPrecondition(
            "the cluster has no nodes yet: start `berth-agent` on a GPU host (or use `berth dev`)"
                .into(),
        ));
    }
    let largest = state
        .nodes
        .values()
        .map(|n| n.gpus.len())
        .max()
        .unwrap_or(0);
    if spec.gpus as usize > largest {
        let host = state
            .nodes
            .values()
            .max_by_key(|n| n.gpus.len())
            .map(|n| n.name.as_str())
            .unwrap_or("");
        return Err(Error::FailedPrecondition(format!(
            "no host has {} GPUs: the largest host ({host}) has {largest}; ask for --gpus {largest} or fewer",
            spec.gpus
        )));
    }
    let unknown = images.iter().any(|(_, set)| set.is_none());
    if !unknown
        && !images
            .iter()
            .any(|(_, set)| set.as_ref().is_some_and(|s| has_image(s, &spec.image)))
    {
        return Err(Error::FailedPrecondition(format!(
            "image {:?} exists on no host (Berth pulls from no registry): build or `docker load` it on a host first; `berth images` lists what each host has",
            spec.image
        )));
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
                    gpu_backend: "simulated".into(),
                    gpus: (0..n)
                        .map(|i| crate::state::GpuInventory {
                            index: i,
                            uuid: format!("{name}{i}"),
                            model: "m".into(),
                            memory_total_bytes: 1,
                        })
                        .collect(),
                    docker_version: String::new(),
                },
            );
        }
        let images = vec![
            (
                "a".to_string(),
                Some(HashSet::from(["busybox:latest".to_string()])),
            ),
            ("b".to_string(), Some(HashSet::new())),
        ];
        let mut s = spec();
        s.gpus = 5;
        let err = against_cluster(&s, &state, &images)
            .unwrap_err()
            .to_string();
        assert!(err.contains("largest host (b) has 4"), "{err}");
        s.gpus = 4;
        assert!(against_cluster(&s, &state, &images).is_ok());
        s.image = "nope:1".into();
        let err = against_cluster(&s, &state, &images)
            .unwrap_err()
            .to_string();
        assert!(err.contains("exists on no host"), "{err}");
        // A node that has not reported yet might hold it: do not refuse.
        let unknown = vec![("a".to_string(), None)];
        assert!(against_cluster(&s, &state, &unknown).is_ok());
    }
}
