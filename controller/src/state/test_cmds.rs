//! Commands as the log carries them, for tests that drive `apply`.

use super::*;

/// Node `name` with `gpus` GPUs of `model` (uuids `NAME-gI`).
pub fn node(name: &str, gpus: u32, model: &str) -> Command {
    Command::RegisterNode(NodeRecord {
        name: name.into(),
        agent_addr: format!("{name}:7451"),
        gpu_backend: GpuBackend::Simulated,
        gpus: (0..gpus)
            .map(|i| GpuInventory {
                index: i,
                uuid: format!("{name}-g{i}"),
                model: model.into(),
                memory_total_bytes: 80 << 30,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
}

/// Job `id` placed on `node`'s GPUs `gpus`, preempting `preempt`.
pub fn place(id: &str, node: &str, gpus: &[u32], preempt: &[&str]) -> Command {
    Command::Place {
        placements: vec![placement(id, node, gpus)],
        preemptions: preempt.iter().map(|p| p.to_string()).collect(),
    }
}

/// Job `id` on `node`'s GPUs `gpus` (uuids `NODE-gI`), holding nothing else.
pub fn placement(id: &str, node: &str, gpus: &[u32]) -> Placement {
    Placement {
        job_id: id.into(),
        node: node.into(),
        gpus: gpus
            .iter()
            .map(|i| GpuRef {
                index: *i,
                uuid: format!("{node}-g{i}"),
            })
            .collect(),
        ..Default::default()
    }
}

pub fn started(id: &str, at_ms: i64) -> Command {
    Command::Started {
        job_id: id.into(),
        container_id: format!("c-{id}"),
        at_ms,
    }
}

pub fn exited(id: &str, code: i32, at_ms: i64) -> Command {
    Command::Exited {
        job_id: id.into(),
        exit_code: code,
        at_ms,
    }
}
