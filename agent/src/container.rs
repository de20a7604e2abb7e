//! Allocation → `ContainerSpec`: pure, so every field `docker inspect` will
//! show is unit-tested here.

use std::collections::HashMap;

use berth_proto::internal::v1::Allocation;

use crate::runtime::{
    ContainerSpec, LABEL_ATTEMPT, LABEL_CLUSTER, LABEL_GPUS, LABEL_JOB, LABEL_JOB_NAME, LABEL_NODE,
};

/// Builds the container for `alloc`. `real_gpus` is true under NVML: only then
/// does the container get a `DeviceRequest` (simulated GPUs do not exist).
pub fn spec(alloc: &Allocation, cluster: &str, node: &str, real_gpus: bool) -> ContainerSpec {
    let js = alloc.spec.clone().unwrap_or_default();
    let uuids: Vec<String> = alloc.gpus.iter().map(|g| g.uuid.clone()).collect();
    let mut env = js.env.clone();
    // Array index, gang rendezvous, slice size: after the user's, so they win.
    env.extend(alloc.extra_env.iter().cloned());
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
    let labels = HashMap::from([
        (LABEL_CLUSTER.to_string(), cluster.to_string()),
        (LABEL_NODE.to_string(), node.to_string()),
        (LABEL_JOB.to_string(), alloc.job_id.clone()),
        (LABEL_JOB_NAME.to_string(), alloc.job_name.clone()),
        (LABEL_GPUS.to_string(), uuids.join(",")),
        (LABEL_ATTEMPT.to_string(), alloc.attempt.to_string()),
    ]);
    ContainerSpec {
        name: alloc.job_name.clone(),
        image: js.image,
        command: js.command,
        entrypoint: js.entrypoint,
        env,
        labels,
        binds: js
            .mounts
            .iter()
            .map(|m| {
                format!(
                    "{}:{}{}",
                    m.source,
                    m.target,
                    if m.read_only { ":ro" } else { "" }
                )
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
        memory_bytes: js.memory_bytes,
        nano_cpus: js.nano_cpus,
        device_ids: if real_gpus { uuids } else { Vec::new() },
        workdir: js.workdir,
        tty: js.tty,
        stdin: js.stdin,
    }
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
        }
    }

    #[test]
    fn carries_gpus_binds_ports_shm_and_labels() {
        let s = spec(&alloc(), "cl", "n1", true);
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
        assert_eq!(s.binds, vec!["/d:/data:ro"]);
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
        let s = spec(&alloc(), "cl", "n1", false);
        assert!(s.device_ids.is_empty());
        assert!(s
            .env
            .contains(&"NVIDIA_VISIBLE_DEVICES=GPU-2,GPU-3".to_string()));
        let mut a = alloc();
        a.gpus.clear();
        let s = spec(&a, "cl", "n1", false);
        assert!(s.env.contains(&"NVIDIA_VISIBLE_DEVICES=void".to_string()));
    }
}
