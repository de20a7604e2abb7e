//! Allocation → `ContainerSpec`: pure, so every field `docker inspect` will
//! show is unit-tested here.

use std::collections::HashMap;

use berth_proto::internal::v1::Allocation;
use berth_proto::policy::Policy;

use crate::limits::HostLimits;
use crate::runtime::{
    BindMount, ContainerSpec, LABEL_ATTEMPT, LABEL_AUTO_REMOVE, LABEL_CLUSTER, LABEL_GPUS,
    LABEL_JOB, LABEL_JOB_NAME, LABEL_KEEP_WHEN_LOST, LABEL_NODE,
};

/// What the host adds to every container: its defaults (log size, pids,
/// memory per GPU), each GPU's close CPUs, and the gang interface.
#[derive(Debug, Clone)]
pub struct HostSide<'a> {
    pub limits: &'a HostLimits,
    /// GPU uuid → its CPU affinity list (from NVML; absent when unknown).
    pub affinity: HashMap<String, String>,
    pub nccl_socket_ifname: Option<&'a str>,
}

/// Builds the container for `alloc`. `real_gpus` is true under NVML: only then
/// does the container get a `DeviceRequest` (simulated GPUs do not exist).
pub fn spec(
    alloc: &Allocation,
    cluster: &str,
    node: &str,
    real_gpus: bool,
    host: &HostSide,
) -> ContainerSpec {
    let limits = host.limits;
    let js = alloc.spec.clone().unwrap_or_default();
    let uuids: Vec<String> = alloc.gpus.iter().map(|g| g.uuid.clone()).collect();
    let mut env = js.env.clone();
    // Array index, gang rendezvous, slice size: after the user's, so they win.
    env.extend(alloc.extra_env.iter().cloned());
    // A gang's task: the host's interface for NCCL, unless the job set one.
    if let Some(ifname) = host.nccl_socket_ifname.filter(|_| js.nodes > 1) {
        if !env.iter().any(|e| e.starts_with("NCCL_SOCKET_IFNAME=")) {
            env.push(format!("NCCL_SOCKET_IFNAME={ifname}"));
        }
    }
    // With nvidia as the default runtime (the seeds' daemon.json), a CUDA image
    // that says NVIDIA_VISIBLE_DEVICES=all would see every GPU: always set it,
    // to the job's GPUs or to "void" for a job without GPUs.
    let visible = if uuids.is_empty() {
        "void".to_string()
    } else {
        uuids.join(",")
    };
    env.push(format!("NVIDIA_VISIBLE_DEVICES={visible}"));
    // CUDA accepts GPU uuids here; host indexes would be wrong inside a
    // container whose devices the NVIDIA runtime renumbers from 0.
    env.push(format!("CUDA_VISIBLE_DEVICES={}", uuids.join(",")));
    env.push(format!(
        "BERTH_GPU_INDEXES={}",
        alloc
            .gpus
            .iter()
            .map(|g| g.index.to_string())
            .collect::<Vec<_>>()
            .join(",")
    ));
    env.push(format!("BERTH_JOB_ID={}", alloc.job_id));
    env.push(format!("BERTH_JOB_NAME={}", alloc.job_name));
    env.push(format!("BERTH_NODE={node}"));
    // The user's labels first: Berth's own keys below overwrite any that
    // try to pass for them (the controller refuses those at submit too).
    let mut labels: HashMap<String, String> = js
        .labels
        .iter()
        .filter(|(k, _)| !k.starts_with("berth."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.extend([
        (LABEL_CLUSTER.to_string(), cluster.to_string()),
        (LABEL_NODE.to_string(), node.to_string()),
        (LABEL_JOB.to_string(), alloc.job_id.clone()),
        (LABEL_JOB_NAME.to_string(), alloc.job_name.clone()),
        (LABEL_GPUS.to_string(), uuids.join(",")),
        (LABEL_ATTEMPT.to_string(), alloc.attempt.to_string()),
    ]);
    if alloc.keep_when_lost {
        // On the container, not only in memory: an agent restarted during a
        // partition must still know not to fence it.
        labels.insert(LABEL_KEEP_WHEN_LOST.to_string(), "true".to_string());
    }
    if js.auto_remove {
        labels.insert(LABEL_AUTO_REMOVE.to_string(), "true".to_string());
    }
    // Pinned near its GPUs only when every one's affinity is known.
    let cpuset_cpus = if uuids.is_empty() {
        String::new()
    } else {
        crate::resources::cpuset_for(
            uuids
                .iter()
                .map(|u| host.affinity.get(u).map_or("", String::as_str)),
        )
    };
    ContainerSpec {
        name: alloc.job_name.clone(),
        image: js.image,
        command: js.command,
        entrypoint: js.entrypoint,
        env,
        labels,
        mounts: js
            .mounts
            .iter()
            .map(|m| BindMount {
                source: m.source.clone(),
                target: m.target.clone(),
                read_only: m.read_only,
            })
            .collect(),
        ports: js
            .ports
            .iter()
            .map(|p| {
                let proto = if p.protocol.is_empty() {
                    "tcp"
                } else {
                    p.protocol.as_str()
                };
                (
                    format!("{}/{proto}", p.container_port),
                    p.host_ip.clone(),
                    p.host_port,
                )
            })
            .collect(),
        shm_size_bytes: js.shm_size_bytes,
        memory_bytes: limits.memory_for(js.memory_bytes, js.gpus),
        nano_cpus: js.nano_cpus,
        pids_limit: match js.pids_limit {
            0 => limits.default_pids_limit as i64,
            own => own,
        },
        log_max_size: limits.log_max_size,
        log_max_file: limits.log_max_file,
        device_ids: if real_gpus { uuids } else { Vec::new() },
        workdir: js.workdir,
        tty: js.tty,
        stdin: js.stdin,
        user: js.run_as,
        privileged: js.privileged,
        cap_add: js.cap_add,
        devices: js.devices,
        network: js.network,
        ipc: js.ipc,
        hostname: js.hostname,
        ulimits: js
            .ulimits
            .iter()
            .map(|u| (u.name.clone(), u.soft, u.hard))
            .collect(),
        cap_drop: js.cap_drop,
        expose: js
            .expose
            .iter()
            .map(|e| {
                if e.contains('/') {
                    e.clone()
                } else {
                    format!("{e}/tcp")
                }
            })
            .collect(),
        cpuset_cpus,
    }
}

/// The agent's own check before it creates a container: the policy the
/// controller last sent, for the role the owner had at submit, with every
/// mount source that exists here resolved through its symlinks first (a
/// `/home/alice/x` that links to `/etc` is `/etc`). The controller checked
/// too; an agent must not rely on that. Returns the rule broken.
pub fn admit(alloc: &Allocation, policy: &Policy, protected: &[String]) -> Result<(), String> {
    let mut js = alloc.spec.clone().unwrap_or_default();
    // A job recorded before roles existed is held to a user's rules.
    let role = if alloc.owner_role.is_empty() {
        "user"
    } else {
        alloc.owner_role.as_str()
    };
    for m in &mut js.mounts {
        if let Ok(real) = std::fs::canonicalize(&m.source) {
            m.source = real.display().to_string();
        }
    }
    policy
        .check(&js, &js.user, role, protected)
        .map_err(|v| format!("refused by this host's agent: {v}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{GpuRef, JobSpec, Mount, PortMapping};

    fn alloc() -> Allocation {
        Allocation {
            job_id: "abc".into(),
            job_name: "train".into(),
            spec: Some(JobSpec {
                image: "img:1".into(),
                env: vec!["A=1".into()],
                mounts: vec![Mount {
                    source: "/d".into(),
                    target: "/data".into(),
                    read_only: true,
                }],
                ports: vec![PortMapping {
                    host_port: 16006,
                    container_port: 6006,
                    ..Default::default()
                }],
                shm_size_bytes: 1 << 30,
                gpus: 2,
                ..Default::default()
            }),
            gpus: vec![
                GpuRef {
                    index: 2,
                    uuid: "GPU-2".into(),
                },
                GpuRef {
                    index: 3,
                    uuid: "GPU-3".into(),
                },
            ],
            state: 2,
            extra_env: vec!["RANK=1".into(), "A=2".into()],
            attempt: 0,
            owner_role: String::new(),
            keep_when_lost: false,
        }
    }

    fn side(limits: &HostLimits) -> HostSide<'_> {
        HostSide {
            limits,
            affinity: HashMap::new(),
            nccl_socket_ifname: None,
        }
    }

    #[test]
    fn every_container_gets_the_hosts_limits_and_wait_jobs_a_label() {
        let limits = HostLimits {
            default_memory_per_gpu: Some(8 << 30),
            ..HostLimits::default()
        };
        let mut a = alloc();
        a.keep_when_lost = true;
        let s = spec(&a, "cl", "n1", false, &side(&limits));
        assert_eq!(s.log_max_size, 100 << 20);
        assert_eq!(s.log_max_file, 3);
        assert_eq!(s.pids_limit, 32768);
        assert_eq!(s.memory_bytes, 2 * (8 << 30), "two GPUs, no -m");
        assert_eq!(s.labels[LABEL_KEEP_WHEN_LOST], "true");
        let plain = spec(&alloc(), "cl", "n1", false, &side(&limits));
        assert!(!plain.labels.contains_key(LABEL_KEEP_WHEN_LOST));
        // The job's own --pids-limit (and -1, none) wins over the host's.
        for own in [100, -1] {
            let mut a = alloc();
            a.spec.as_mut().unwrap().pids_limit = own;
            assert_eq!(spec(&a, "cl", "n1", false, &side(&limits)).pids_limit, own);
        }
    }

    #[test]
    fn carries_gpus_binds_ports_shm_and_labels() {
        let s = spec(&alloc(), "cl", "n1", true, &side(&HostLimits::default()));
        // The controller's env comes after the user's, so it wins in docker.
        let a = s.env.iter().rposition(|e| e == "A=2").unwrap();
        assert!(a > s.env.iter().position(|e| e == "A=1").unwrap());
        assert!(s.env.contains(&"RANK=1".to_string()));
        assert_eq!(s.name, "train");
        assert!(s
            .env
            .contains(&"NVIDIA_VISIBLE_DEVICES=GPU-2,GPU-3".to_string()));
        assert!(s
            .env
            .contains(&"CUDA_VISIBLE_DEVICES=GPU-2,GPU-3".to_string()));
        assert!(s.env.contains(&"BERTH_GPU_INDEXES=2,3".to_string()));
        assert!(s.env.contains(&"A=1".to_string()));
        assert_eq!(
            s.mounts,
            vec![BindMount {
                source: "/d".into(),
                target: "/data".into(),
                read_only: true
            }]
        );
        assert_eq!(
            s.ports,
            vec![("6006/tcp".to_string(), String::new(), 16006)]
        );
        assert_eq!(s.shm_size_bytes, 1 << 30);
        assert_eq!(s.device_ids, vec!["GPU-2", "GPU-3"]);
        assert_eq!(s.labels[LABEL_JOB], "abc");
        assert_eq!(s.labels[LABEL_CLUSTER], "cl");
    }

    #[test]
    fn simulated_gpus_get_env_but_no_device_request() {
        let s = spec(&alloc(), "cl", "n1", false, &side(&HostLimits::default()));
        assert!(s.device_ids.is_empty());
        assert!(s
            .env
            .contains(&"NVIDIA_VISIBLE_DEVICES=GPU-2,GPU-3".to_string()));
        let mut a = alloc();
        a.gpus.clear();
        let s = spec(&a, "cl", "n1", false, &side(&HostLimits::default()));
        assert!(s.env.contains(&"NVIDIA_VISIBLE_DEVICES=void".to_string()));
    }

    #[test]
    fn the_agent_refuses_what_the_policy_forbids_even_from_a_controller() {
        let policy = Policy::default();
        let mut a = alloc();
        a.owner_role = "admin".into();
        a.spec.as_mut().unwrap().mounts[0].source = "/var/run/docker.sock".into();
        let e = admit(&a, &policy, &[]).unwrap_err();
        assert!(e.contains("mounts.deny"), "{e}");
        let mut a = alloc();
        a.owner_role = "user".into();
        a.spec.as_mut().unwrap().mounts.clear();
        a.spec.as_mut().unwrap().privileged = true;
        assert!(admit(&a, &policy, &[])
            .unwrap_err()
            .contains("privileges.privileged"));
        // The agent's own key directory is off limits too.
        let mut a = alloc();
        a.owner_role = "admin".into();
        a.spec.as_mut().unwrap().mounts[0].source = "/srv/berth/tls".into();
        assert!(admit(&a, &policy, &["/srv/berth".into()]).is_err());
    }

    #[test]
    fn a_symlink_is_judged_by_where_it_leads_on_this_host() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("innocent");
        std::os::unix::fs::symlink("/etc", &link).unwrap();
        let mut a = alloc();
        a.owner_role = "admin".into();
        a.spec.as_mut().unwrap().mounts[0].source = link.display().to_string();
        let e = admit(&a, &Policy::default(), &[]).unwrap_err();
        assert!(e.contains("/etc"), "{e}");
    }
}
