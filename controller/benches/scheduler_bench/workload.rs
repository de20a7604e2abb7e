//! The scheduler bench's cluster and queue: hosts of mixed GPU models,
//! their reports, and jobs of mixed shapes, all from a seeded generator so
//! every run (and every commit) schedules the same work.

use berth_controller::state::{GpuBackend, GpuInventory, NodeRecord};
use berth_proto::internal::v1::NodeReport;
use berth_proto::v1::{DiskState, Gpu, ImageInfo, JobSpec};
use rand::rngs::StdRng;
use rand::Rng;

const MODELS: [(&str, u64); 4] = [
    ("NVIDIA A100-SXM4-40GB", 40),
    ("NVIDIA A100-SXM4-80GB", 80),
    ("NVIDIA H100 80GB HBM3", 80),
    ("NVIDIA L40S", 48),
];
pub const G: u64 = 1 << 30;

pub fn env_num(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn host(i: usize) -> NodeRecord {
    let (model, mem) = MODELS[i % MODELS.len()];
    NodeRecord {
        name: format!("host{i:04}"),
        agent_addr: format!("10.0.{}.{}:7451", i / 250, i % 250 + 1),
        gpu_backend: GpuBackend::Simulated,
        gpus: (0..8)
            .map(|g| GpuInventory {
                index: g,
                uuid: format!("GPU-{i:04}-{g}"),
                model: model.into(),
                memory_total_bytes: mem * G,
                // Two NVLink islands of four, as on many 8-GPU boards.
                group: format!("{}", g / 4),
            })
            .collect(),
        docker_version: "28.2.2".into(),
        labels: [("zone".to_string(), format!("rack{}", i % 10))].into(),
        // A typical 8-GPU server: what jobs hold of it is counted too.
        millicpus: 128_000,
        memory_bytes: 1024 * G,
        numa_nodes: 2,
    }
}

pub fn images(i: usize) -> Vec<ImageInfo> {
    let mut v = vec![ImageInfo {
        id: "sha256:aaaa0000aaaa0000".into(),
        tags: vec!["train:1".into()],
        size_bytes: 8 * G,
        created_at: 0,
        exposed_ports: Vec::new(),
    }];
    if i.is_multiple_of(2) {
        v.push(ImageInfo {
            id: "sha256:bbbb0000bbbb0000".into(),
            tags: vec!["eval:1".into()],
            size_bytes: 2 * G,
            created_at: 0,
            exposed_ports: Vec::new(),
        });
    }
    v
}

/// A mixed queue: mostly 1-2 GPU jobs, some 4 and 8, model-pinned jobs,
/// shared slices, label constraints, small gangs; 20 users, three priorities.
pub fn job_spec(rng: &mut StdRng) -> JobSpec {
    let roll = rng.random_range(0..100);
    let mut s = JobSpec {
        image: if rng.random_range(0..4) == 0 {
            "eval:1"
        } else {
            "train:1"
        }
        .into(),
        command: vec!["python".into(), "train.py".into()],
        user: format!("user{}", rng.random_range(0..20)),
        priority: match rng.random_range(0..20) {
            0 => 5,
            1 => -5,
            _ => 0,
        },
        preemptible: rng.random_range(0..5) == 0,
        ..JobSpec::default()
    };
    match roll {
        0..40 => s.gpus = 1,
        40..60 => s.gpus = 2,
        60..70 => s.gpus = 4,
        70..75 => s.gpus = 8,
        75..85 => {
            s.gpus = 1;
            s.gpu_model = if roll % 2 == 0 { "A100" } else { "H100" }.into();
        }
        85..95 => s.gpu_memory_bytes = 10 * G,
        95..98 => {
            s.gpus = 2;
            s.constraints = vec![format!("zone=rack{}", roll % 10)];
        }
        _ => {
            s.gpus = 4;
            s.nodes = 2;
            s.preemptible = false;
        }
    }
    s
}

pub fn report(i: usize, node: &NodeRecord) -> NodeReport {
    NodeReport {
        node: node.name.clone(),
        observed_revision: 0,
        gpus: node
            .gpus
            .iter()
            .map(|g| Gpu {
                index: g.index,
                uuid: g.uuid.clone(),
                model: g.model.clone(),
                memory_total_bytes: g.memory_total_bytes,
                topology_group: g.group.clone(),
                ..Gpu::default()
            })
            .collect(),
        disk: Some(DiskState {
            docker_root_dir: "/var/lib/docker".into(),
            total_bytes: 2000 * G,
            free_bytes: 1500 * G,
        }),
        images: images(i),
        ..NodeReport::default()
    }
}
