//! The API's types and the state's, converted at the API's edge: what a
//! client sends becomes what the log records, and back. Field by field, so
//! a field added to one side and not the other fails to compile here.

use berth_proto::v1 as pb;

use crate::state::{self, RestartPolicy};
use crate::{Error, Result};

/// A submitted spec as the log records it. The restart policy is parsed
/// here, once.
pub fn spec_from_wire(s: pb::JobSpec) -> Result<state::JobSpec> {
    let pb::JobSpec {
        image,
        command,
        entrypoint,
        env,
        mounts,
        ports,
        shm_size_bytes,
        gpus,
        workdir,
        tty,
        stdin,
        gpu_model,
        gpu_memory_bytes,
        constraints,
        exclusive,
        priority,
        preemptible,
        user,
        nodes,
        master_port,
        array,
        restart,
        memory_bytes,
        nano_cpus,
        run_as,
        privileged,
        cap_add,
        devices,
        network,
        ipc,
        on_host_lost,
        pids_limit,
        hostname,
        ulimits,
        cap_drop,
        labels,
        auto_remove,
        expose,
        publish_all,
        gpus_all,
    } = s;
    let mut ports: Vec<state::PortMapping> = ports
        .into_iter()
        .map(|p| state::PortMapping {
            host_ip: p.host_ip,
            host_port: p.host_port,
            container_port: p.container_port,
            protocol: p.protocol,
        })
        .collect();
    if publish_all {
        // docker's -P: every exposed port not published already, on a
        // host port Berth picks.
        for e in &expose {
            let (port, proto) = parse_expose(e)?;
            let published = ports
                .iter()
                .any(|p| p.container_port == port && state::norm_proto(&p.protocol) == proto);
            if !published {
                ports.push(state::PortMapping {
                    host_ip: String::new(),
                    host_port: 0,
                    container_port: port,
                    protocol: proto,
                });
            }
        }
    }
    Ok(state::JobSpec {
        pids_limit,
        hostname,
        ulimits: ulimits
            .into_iter()
            .map(|u| state::Ulimit {
                name: u.name,
                soft: u.soft,
                hard: u.hard,
            })
            .collect(),
        cap_drop,
        labels: labels.into_iter().collect(),
        auto_remove,
        expose,
        gpus_all,
        restart: restart_from_wire(&restart)?,
        on_host_lost: state::OnHostLost::parse(&on_host_lost).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "--on-host-lost {on_host_lost:?}: use fail, restart or wait"
            ))
        })?,
        image,
        command,
        entrypoint,
        env,
        mounts: mounts
            .into_iter()
            .map(|m| state::Mount {
                source: m.source,
                target: m.target,
                read_only: m.read_only,
            })
            .collect(),
        ports,
        shm_size_bytes,
        gpus,
        workdir,
        tty,
        stdin,
        gpu_model,
        gpu_memory_bytes,
        constraints,
        exclusive,
        priority,
        preemptible,
        user,
        nodes,
        master_port,
        array: array.map(|a| state::ArrayRange {
            start: a.start,
            end: a.end,
            max_running: a.max_running,
        }),
        memory_bytes,
        nano_cpus,
        // Set by submit from the caller's identity.
        role: String::new(),
        run_as,
        privileged,
        cap_add,
        devices,
        network,
        ipc,
    })
}

/// A recorded spec as the API shows it.
pub fn spec_to_wire(s: &state::JobSpec) -> pb::JobSpec {
    let state::JobSpec {
        image,
        command,
        entrypoint,
        env,
        mounts,
        ports,
        shm_size_bytes,
        gpus,
        workdir,
        tty,
        stdin,
        gpu_model,
        gpu_memory_bytes,
        constraints,
        exclusive,
        priority,
        preemptible,
        user,
        nodes,
        master_port,
        array,
        restart,
        memory_bytes,
        nano_cpus,
        role: _,
        run_as,
        privileged,
        cap_add,
        devices,
        network,
        ipc,
        on_host_lost,
        pids_limit,
        hostname,
        ulimits,
        cap_drop,
        labels,
        auto_remove,
        expose,
        gpus_all,
    } = s;
    pb::JobSpec {
        pids_limit: *pids_limit,
        hostname: hostname.clone(),
        ulimits: ulimits
            .iter()
            .map(|u| pb::Ulimit {
                name: u.name.clone(),
                soft: u.soft,
                hard: u.hard,
            })
            .collect(),
        cap_drop: cap_drop.clone(),
        labels: labels.clone().into_iter().collect(),
        auto_remove: *auto_remove,
        expose: expose.clone(),
        // Resolved at submit into `ports` with host port 0.
        publish_all: false,
        gpus_all: *gpus_all,
        on_host_lost: on_host_lost.word().to_string(),
        image: image.clone(),
        command: command.clone(),
        entrypoint: entrypoint.clone(),
        env: env.clone(),
        mounts: mounts
            .iter()
            .map(|m| pb::Mount {
                source: m.source.clone(),
                target: m.target.clone(),
                read_only: m.read_only,
            })
            .collect(),
        ports: ports.iter().map(port_to_wire).collect(),
        shm_size_bytes: *shm_size_bytes,
        gpus: *gpus,
        workdir: workdir.clone(),
        tty: *tty,
        stdin: *stdin,
        gpu_model: gpu_model.clone(),
        gpu_memory_bytes: *gpu_memory_bytes,
        constraints: constraints.clone(),
        exclusive: *exclusive,
        priority: *priority,
        preemptible: *preemptible,
        user: user.clone(),
        nodes: *nodes,
        master_port: *master_port,
        array: array.map(|a| pb::ArrayRange {
            start: a.start,
            end: a.end,
            max_running: a.max_running,
        }),
        restart: restart.as_spec(),
        memory_bytes: *memory_bytes,
        nano_cpus: *nano_cpus,
        run_as: run_as.clone(),
        privileged: *privileged,
        cap_add: cap_add.clone(),
        devices: devices.clone(),
        network: network.clone(),
        ipc: ipc.clone(),
    }
}

pub fn port_to_wire(p: &state::PortMapping) -> pb::PortMapping {
    pb::PortMapping {
        host_ip: p.host_ip.clone(),
        host_port: p.host_port,
        container_port: p.container_port,
        protocol: p.protocol.clone(),
    }
}

/// docker's `--expose PORT[/PROTO]`: the port and "tcp" or "udp".
pub fn parse_expose(e: &str) -> Result<(u32, String)> {
    let (port, proto) = e.split_once('/').unwrap_or((e, "tcp"));
    let port: u32 = port
        .parse()
        .ok()
        .filter(|p| (1..=65535).contains(p))
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "--expose {e:?}: give a container port 1..65535, optionally /tcp or /udp"
            ))
        })?;
    if proto != "tcp" && proto != "udp" {
        return Err(Error::InvalidArgument(format!(
            "--expose {e:?}: protocol {proto:?} must be tcp or udp"
        )));
    }
    Ok((port, proto.to_string()))
}

/// Docker's `--restart` words; empty is no policy.
pub fn restart_from_wire(s: &str) -> Result<RestartPolicy> {
    RestartPolicy::parse(s).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "--restart {s:?}: use no, on-failure[:N], always or unless-stopped"
        ))
    })
}

pub fn state_to_wire(s: state::JobState) -> pb::JobState {
    match s {
        state::JobState::Queued => pb::JobState::Queued,
        state::JobState::Placed => pb::JobState::Placed,
        state::JobState::Pulling => pb::JobState::Pulling,
        state::JobState::Running => pb::JobState::Running,
        state::JobState::Stopping => pb::JobState::Stopping,
        state::JobState::Exited => pb::JobState::Exited,
        state::JobState::Failed => pb::JobState::Failed,
        state::JobState::Cancelled => pb::JobState::Cancelled,
    }
}

/// `None` for UNSPECIFIED, which no job is ever in.
pub fn state_from_wire(s: pb::JobState) -> Option<state::JobState> {
    Some(match s {
        pb::JobState::Unspecified => return None,
        pb::JobState::Queued => state::JobState::Queued,
        pb::JobState::Placed => state::JobState::Placed,
        pb::JobState::Pulling => state::JobState::Pulling,
        pb::JobState::Running => state::JobState::Running,
        pb::JobState::Stopping => state::JobState::Stopping,
        pb::JobState::Exited => state::JobState::Exited,
        pb::JobState::Failed => state::JobState::Failed,
        pb::JobState::Cancelled => state::JobState::Cancelled,
    })
}

pub fn gpus_to_wire(gpus: &[state::GpuRef]) -> Vec<pb::GpuRef> {
    gpus.iter()
        .map(|g| pb::GpuRef {
            index: g.index,
            uuid: g.uuid.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_goes_to_the_log_and_back_unchanged() {
        let wire = pb::JobSpec {
            image: "lab/train:v3".into(),
            command: vec!["python".into(), "train.py".into()],
            entrypoint: vec!["/bin/sh".into()],
            env: vec!["A=1".into()],
            mounts: vec![pb::Mount {
                source: "/data".into(),
                target: "/d".into(),
                read_only: true,
            }],
            ports: vec![pb::PortMapping {
                host_ip: "127.0.0.1".into(),
                host_port: 8080,
                container_port: 80,
                protocol: "udp".into(),
            }],
            shm_size_bytes: 1 << 30,
            gpus: 2,
            workdir: "/w".into(),
            tty: true,
            stdin: true,
            gpu_model: "A100".into(),
            gpu_memory_bytes: 40 << 30,
            constraints: vec!["zone=a".into()],
            exclusive: true,
            priority: -3,
            preemptible: true,
            user: "alice".into(),
            nodes: 2,
            master_port: 29501,
            array: Some(pb::ArrayRange {
                start: 1,
                end: 9,
                max_running: 2,
            }),
            restart: "on-failure:3".into(),
            memory_bytes: 6 << 20,
            nano_cpus: 1_500_000_000,
            run_as: "1000:1000".into(),
            privileged: true,
            cap_add: vec!["SYS_PTRACE".into()],
            devices: vec!["/dev/fuse".into()],
            network: "host".into(),
            ipc: "host".into(),
            on_host_lost: "wait".into(),
            pids_limit: 4096,
            hostname: "rank0".into(),
            ulimits: vec![pb::Ulimit {
                name: "memlock".into(),
                soft: -1,
                hard: -1,
            }],
            cap_drop: vec!["NET_RAW".into()],
            labels: [("team".to_string(), "vision".to_string())].into(),
            auto_remove: true,
            expose: vec!["8888/tcp".into()],
            // Resolved at submit into ports: never read back.
            publish_all: false,
            gpus_all: false,
        };
        let recorded = spec_from_wire(wire.clone()).unwrap();
        assert_eq!(recorded.restart, RestartPolicy::OnFailure { max: Some(3) });
        assert_eq!(spec_to_wire(&recorded), wire);
        assert!(spec_from_wire(pb::JobSpec {
            restart: "sometimes".into(),
            ..Default::default()
        })
        .is_err());
        assert!(spec_from_wire(pb::JobSpec {
            on_host_lost: "panic".into(),
            ..Default::default()
        })
        .is_err());
        for s in [
            state::JobState::Queued,
            state::JobState::Placed,
            state::JobState::Pulling,
            state::JobState::Running,
            state::JobState::Stopping,
            state::JobState::Exited,
            state::JobState::Failed,
            state::JobState::Cancelled,
        ] {
            assert_eq!(state_from_wire(state_to_wire(s)), Some(s));
        }
    }
}
