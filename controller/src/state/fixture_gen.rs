//! One-off: writes `controller/testdata/log/v1/`, a raft log and snapshots
//! in the log format of this commit (each entry `serde_json` of `Command`,
//! each snapshot `serde_json` of `State`), so later formats can prove they
//! still read it. Run once:
//! `BERTH_WRITE_LOG_FIXTURE=1 cargo test -p berth-controller write_v1_log_fixture -- --ignored`

use std::path::PathBuf;

use berth_proto::v1::{ArrayRange, GpuRef, JobSpec, Mount, PortMapping};

use super::*;

fn gpu(node: &str, i: u32, model: &str, mem_gib: u64, group: &str) -> GpuInventory {
    GpuInventory {
        index: i,
        uuid: format!("GPU-{node}-{i}"),
        model: model.into(),
        memory_total_bytes: mem_gib << 30,
        group: group.into(),
    }
}

fn node(name: &str, addr: &str, gpus: Vec<GpuInventory>, labels: &[(&str, &str)]) -> Command {
    Command::RegisterNode(NodeRecord {
        name: name.into(),
        agent_addr: addr.into(),
        gpu_backend: "simulated".into(),
        gpus,
        docker_version: "28.2.2".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    })
}

fn refs(node: &str, idx: &[u32]) -> Vec<GpuRef> {
    idx.iter()
        .map(|i| GpuRef {
            index: *i,
            uuid: format!("GPU-{node}-{i}"),
        })
        .collect()
}

fn placement(job: &str, node: &str, idx: &[u32]) -> Placement {
    Placement {
        job_id: job.into(),
        node: node.into(),
        gpus: refs(node, idx),
    }
}

fn submit(id: &str, name: &str, spec: JobSpec, at_ms: i64, request_id: &str) -> Command {
    Command::Submit {
        id: id.into(),
        name: name.into(),
        spec: Box::new(spec),
        at_ms,
        request_id: request_id.into(),
    }
}

const T0: i64 = 1_790_000_000_000;

/// The commands, in log order, as the controller of this commit proposes them.
fn script() -> Vec<Command> {
    let a100 = (0..8)
        .map(|i| {
            gpu(
                "n1",
                i,
                "NVIDIA A100-SXM4-80GB",
                80,
                if i < 4 { "nvl0" } else { "nvl1" },
            )
        })
        .collect();
    let v100 = (0..2).map(|i| gpu("n2", i, "Tesla V100", 32, "")).collect();
    let train = JobSpec {
        image: "lab/train:v3".into(),
        command: vec!["python".into(), "train.py".into(), "--lr=3e-4".into()],
        entrypoint: vec!["/bin/sh".into(), "-c".into()],
        env: vec!["WANDB_MODE=offline".into(), "SECRET=s3cr3t".into()],
        mounts: vec![
            Mount {
                source: "/data/imagenet".into(),
                target: "/data".into(),
                read_only: true,
            },
            Mount {
                source: "/home/alice/ckpt".into(),
                target: "/ckpt".into(),
                read_only: false,
            },
        ],
        ports: vec![PortMapping {
            host_ip: "127.0.0.1".into(),
            host_port: 16006,
            container_port: 6006,
            protocol: "tcp".into(),
        }],
        shm_size_bytes: 8 << 30,
        gpus: 2,
        workdir: "/workspace".into(),
        gpu_model: "A100".into(),
        constraints: vec!["zone=a".into(), "rack!=r9".into()],
        priority: 10,
        user: "alice".into(),
        restart: "on-failure:2".into(),
        memory_bytes: 64 << 30,
        nano_cpus: 8_000_000_000,
        ..Default::default()
    };
    let gang = JobSpec {
        image: "lab/train:v3".into(),
        gpus: 1,
        nodes: 2,
        user: "bob".into(),
        ..Default::default()
    };
    let array = JobSpec {
        image: "berth/workload:latest".into(),
        command: vec!["sh".into(), "-c".into(), "echo $BERTH_ARRAY_INDEX".into()],
        gpus: 1,
        array: Some(ArrayRange {
            start: 0,
            end: 3,
            max_running: 2,
        }),
        user: "carol".into(),
        ..Default::default()
    };
    let slice = JobSpec {
        image: "berth/workload:latest".into(),
        gpu_memory_bytes: 10 << 30,
        user: "dave".into(),
        tty: true,
        stdin: true,
        ..Default::default()
    };
    let low = JobSpec {
        image: "berth/workload:latest".into(),
        gpus: 1,
        preemptible: true,
        priority: -5,
        user: "erin".into(),
        restart: "always".into(),
        ..Default::default()
    };
    let exclusive = JobSpec {
        image: "berth/workload:latest".into(),
        exclusive: true,
        user: "frank".into(),
        master_port: 0,
        ..Default::default()
    };
    vec![
        /* 1 */ Command::Init {
            cluster_id: "0123456789abcdef".into(),
        },
        /* 2 */ node("n1", "10.0.0.1:7451", a100, &[("zone", "a")]),
        /* 3 */
        node(
            "n2",
            "10.0.0.2:7451",
            v100,
            &[("zone", "b"), ("rack", "r2")],
        ),
        /* 4 */ submit("a00000000001", "train", train.clone(), T0 + 1_000, "req-1"),
        /* 5 */
        submit(
            "a00000000099",
            "train-retry",
            train.clone(),
            T0 + 1_100,
            "req-1",
        ),
        /* 6 */ submit("b00000000001", "ddp", gang, T0 + 2_000, ""),
        /* 7 */ submit("c00000000001", "sweep", array, T0 + 3_000, "req-3"),
        /* 8 */ submit("d00000000001", "notebook", slice, T0 + 4_000, ""),
        /* 9 */ submit("a00000000002", "train", train, T0 + 5_000, ""),
        /* 10 */
        Command::SetQuota {
            user: "alice".into(),
            gpus: Some(4),
        },
        /* 11 */
        Command::SetQuota {
            user: "carol".into(),
            gpus: Some(2),
        },
        /* 12 */
        Command::Place {
            placements: vec![
                placement("a00000000001", "n1", &[0, 1]),
                placement("b00000000001.0", "n1", &[2]),
                placement("b00000000001.1", "n2", &[0]),
                placement("c00000000001.0", "n1", &[4]),
                placement("c00000000001.1", "n2", &[1]),
                placement("d00000000001", "n1", &[5]),
            ],
            preemptions: vec![],
        },
        /* 13: a stale plan: GPU 0 is held by a live job */
        Command::Place {
            placements: vec![placement("c00000000001.2", "n1", &[0])],
            preemptions: vec![],
        },
        /* 14 */ Command::Pulling {
            job_id: "a00000000001".into(),
        },
        /* 15 */
        Command::Started {
            job_id: "a00000000001".into(),
            container_id: "ctr-a1".into(),
            at_ms: T0 + 10_000,
        },
        /* 16 */
        Command::Started {
            job_id: "b00000000001.0".into(),
            container_id: "ctr-b0".into(),
            at_ms: T0 + 10_100,
        },
        /* 17 */
        Command::Started {
            job_id: "b00000000001.1".into(),
            container_id: "ctr-b1".into(),
            at_ms: T0 + 10_200,
        },
        /* 18 */
        Command::Started {
            job_id: "c00000000001.0".into(),
            container_id: "ctr-c0".into(),
            at_ms: T0 + 10_300,
        },
        /* 19 */
        Command::Started {
            job_id: "c00000000001.1".into(),
            container_id: "ctr-c1".into(),
            at_ms: T0 + 10_400,
        },
        /* 20 */
        Command::Started {
            job_id: "d00000000001".into(),
            container_id: "ctr-d".into(),
            at_ms: T0 + 10_500,
        },
        /* 21 */
        Command::Exited {
            job_id: "c00000000001.0".into(),
            exit_code: 0,
            at_ms: T0 + 20_000,
        },
        /* 22 */
        Command::Place {
            placements: vec![placement("c00000000001.2", "n1", &[4])],
            preemptions: vec![],
        },
        /* 23: restart policy on-failure:2 requeues it */
        Command::Failed {
            job_id: "a00000000001".into(),
            message: "its host n1 stopped reporting for 15 s (lost)".into(),
            at_ms: T0 + 30_000,
        },
        /* 24 */
        Command::Update {
            job_id: "a00000000001".into(),
            memory_bytes: 96 << 30,
            nano_cpus: 0,
            restart: "always".into(),
        },
        /* 25: a gang task cannot take a restart policy */
        Command::Update {
            job_id: "b00000000001.0".into(),
            memory_bytes: 0,
            nano_cpus: 0,
            restart: "always".into(),
        },
        /* 26 */ submit("e00000000001", "filler", low, T0 + 31_000, ""),
        /* 27 */
        Command::Place {
            placements: vec![placement("e00000000001", "n1", &[6])],
            preemptions: vec![],
        },
        /* 28 */
        Command::Started {
            job_id: "e00000000001".into(),
            container_id: "ctr-e".into(),
            at_ms: T0 + 32_000,
        },
        /* 29: preemption for a higher-priority job */
        Command::Place {
            placements: vec![placement("a00000000001", "n1", &[0, 1])],
            preemptions: vec!["e00000000001".into()],
        },
        /* 30 */
        Command::Exited {
            job_id: "e00000000001".into(),
            exit_code: 143,
            at_ms: T0 + 33_000,
        },
        /* 31: gang rank 1 fails: the gang is torn down */
        Command::Exited {
            job_id: "b00000000001.1".into(),
            exit_code: 3,
            at_ms: T0 + 40_000,
        },
        /* 32 */
        Command::Exited {
            job_id: "b00000000001.0".into(),
            exit_code: 137,
            at_ms: T0 + 40_500,
        },
        /* 33: a user stop */
        Command::Cancel {
            job_id: "d00000000001".into(),
            at_ms: T0 + 41_000,
        },
        /* 34 */
        Command::Exited {
            job_id: "d00000000001".into(),
            exit_code: 0,
            at_ms: T0 + 41_500,
        },
        /* 35: a stop of a queued job */
        Command::Cancel {
            job_id: "c00000000001.3".into(),
            at_ms: T0 + 42_000,
        },
        /* 36: no such job */
        Command::Started {
            job_id: "zzz".into(),
            container_id: "x".into(),
            at_ms: T0 + 43_000,
        },
        /* 37: already finished */
        Command::Cancel {
            job_id: "d00000000001".into(),
            at_ms: T0 + 43_500,
        },
        /* 38 */
        submit(
            "f00000000001",
            "whole-host",
            exclusive,
            T0 + 44_000,
            "req-38",
        ),
        /* 39 */
        Command::Place {
            placements: vec![placement("f00000000001", "n2", &[])],
            preemptions: vec![],
        },
        /* 40: n2 re-registers with a new label */
        node(
            "n2",
            "10.0.0.2:7451",
            (0..2).map(|i| gpu("n2", i, "Tesla V100", 32, "")).collect(),
            &[("zone", "b"), ("rack", "r3")],
        ),
        /* 41 */
        Command::SetQuota {
            user: "carol".into(),
            gpus: None,
        },
        /* 42: retention: the gang (whole) and the slice job ended before this */
        Command::Forget {
            before_ms: T0 + 41_600,
        },
        /* 43 */
        Command::Started {
            job_id: "a00000000001".into(),
            container_id: "ctr-a1-2".into(),
            at_ms: T0 + 50_000,
        },
    ]
}

/// Snapshots are taken after these indexes.
pub const SNAPSHOT_AT: [u64; 2] = [22, 44];

#[test]
#[ignore = "one-off: writes the v1 log fixture"]
fn write_v1_log_fixture() {
    if std::env::var_os("BERTH_WRITE_LOG_FIXTURE").is_none() {
        return;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/log/v1");
    std::fs::create_dir_all(&dir).unwrap();
    let mut entries: Vec<Vec<u8>> = script()
        .iter()
        .map(|c| serde_json::to_vec(c).unwrap())
        .collect();
    // A command this version does not know (a newer controller's, or a
    // damaged one): version 1 skipped it on every replica alike.
    entries.insert(39, br#"{"Drain":{"node":"n2"}}"#.to_vec());
    let mut state = State::default();
    let mut outcomes = Vec::new();
    let mut log = Vec::new();
    for (i, data) in entries.iter().enumerate() {
        let index = i as u64 + 1;
        log.extend_from_slice(data);
        log.push(b'\n');
        let outcome = match serde_json::from_slice::<Command>(data) {
            Ok(cmd) => state.apply(index, &cmd),
            Err(e) => {
                state.applied_index = index;
                Err(Rejection::Malformed(e.to_string()))
            }
        };
        outcomes.push(super::format_view::outcome(&outcome));
        if SNAPSHOT_AT.contains(&index) {
            let snap = serde_json::to_vec(&state).unwrap();
            std::fs::write(dir.join(format!("snapshot-{index}.json")), snap).unwrap();
        }
    }
    std::fs::write(dir.join("entries.jsonl"), log).unwrap();
    let expected = serde_json::json!({
        "outcomes": outcomes,
        "state": super::format_view::view(&state),
    });
    std::fs::write(
        dir.join("expected.json"),
        serde_json::to_vec_pretty(&expected).unwrap(),
    )
    .unwrap();
}
