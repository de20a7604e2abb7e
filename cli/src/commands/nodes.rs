//! `berth nodes`: one row per GPU — what `nvidia-smi` on every host would say,
//! plus who holds each GPU.

use anyhow::Result;
use berth_proto::v1::{ListJobsRequest, ListNodesRequest, NodeStatus};
use serde_json::json;

use crate::client::{status_message, Client};
use crate::output::{bytes, table, Format};

pub async fn run(client: &Client, format: Format) -> Result<()> {
    let nodes = client
        .nodes()
        .list_nodes(ListNodesRequest {})
        .await
        .map_err(status_message)?
        .into_inner()
        .nodes;
    let jobs = client
        .jobs()
        .list_jobs(ListJobsRequest { all: false })
        .await
        .map_err(status_message)?
        .into_inner()
        .jobs;
    let job_name = |id: &str| {
        jobs.iter()
            .find(|j| j.id == id)
            .map_or(id.to_string(), |j| j.name.clone())
    };
    if format == Format::Json {
        let out: Vec<_> = nodes
            .iter()
            .map(|n| {
                json!({
                    "name": n.name,
                    "status": status_word(n.status),
                    "agent_addr": n.agent_addr,
                    "gpu_backend": n.gpu_backend,
                    "docker_version": n.docker_version,
                    "last_seen_ms_ago": n.last_seen_ms_ago,
                    "labels": n.labels,
                    "disk": n.disk.as_ref().map(|d| json!({"docker_root_dir": d.docker_root_dir, "total_bytes": d.total_bytes, "free_bytes": d.free_bytes})),
                    "gpus": n.gpus.iter().map(|g| json!({
                        "index": g.index, "uuid": g.uuid, "model": g.model,
                        "memory_total_bytes": g.memory_total_bytes, "memory_used_bytes": g.memory_used_bytes,
                        "utilization_percent": g.utilization_percent,
                        "job_id": g.job_id,
                        "topology_group": g.topology_group,
                        "slices": g.slices.iter().map(|s| json!({"job_id": s.job_id, "memory_bytes": s.memory_bytes})).collect::<Vec<_>>(),
                        "foreign": !g.foreign_processes.is_empty(),
                        "foreign_processes": g.foreign_processes.iter().map(|p| json!({"pid": p.pid, "name": p.name, "used_memory_bytes": p.used_memory_bytes})).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let mut rows = Vec::new();
    for n in &nodes {
        let disk = n
            .disk
            .as_ref()
            .map_or("-".into(), |d| format!("{} free", bytes(d.free_bytes)));
        let status = status_word(n.status).to_string();
        if n.gpus.is_empty() {
            rows.push(vec![
                n.name.clone(),
                status.clone(),
                "-".into(),
                "(no GPUs)".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                disk.clone(),
            ]);
        }
        for g in &n.gpus {
            let holder = if !g.job_id.is_empty() {
                job_name(&g.job_id)
            } else if !g.slices.is_empty() {
                let parts: Vec<String> = g
                    .slices
                    .iter()
                    .map(|s| format!("{} ({})", job_name(&s.job_id), bytes(s.memory_bytes)))
                    .collect();
                format!("shared: {}", parts.join(", "))
            } else if let Some(p) = g.foreign_processes.first() {
                format!("foreign ({} pid {})", p.name, p.pid)
            } else {
                "-".into()
            };
            rows.push(vec![
                n.name.clone(),
                status.clone(),
                g.index.to_string(),
                g.model.clone(),
                format!(
                    "{} / {}",
                    bytes(g.memory_used_bytes),
                    bytes(g.memory_total_bytes)
                ),
                format!("{}%", g.utilization_percent),
                holder,
                disk.clone(),
            ]);
        }
    }
    println!(
        "{}",
        table(
            &["NODE", "STATUS", "GPU", "MODEL", "MEMORY", "UTIL", "HELD BY", "DISK"],
            rows
        )
    );
    Ok(())
}

fn status_word(s: i32) -> &'static str {
    match NodeStatus::try_from(s) {
        Ok(NodeStatus::Ready) => "ready",
        Ok(NodeStatus::Down) => "down",
        _ => "unknown",
    }
}
