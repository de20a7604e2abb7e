//! `berth nodes`: one row per GPU — what `nvidia-smi` on every host would say,
//! plus who holds each GPU.

use anyhow::Result;
use berth_proto::v1::{ListJobsRequest, ListNodesRequest, Node, NodeStatus};
use serde_json::json;

use crate::client::Client;
use crate::output::{bytes, table, Format};

#[derive(clap::Args)]
pub struct Args {
    /// Also each node's Docker daemon: data root, storage and cgroup
    /// drivers, runtimes (nvidia?), proxies, and what looks misconfigured.
    #[arg(short, long)]
    verbose: bool,
}

pub async fn run(client: &Client, args: Args, format: Format) -> Result<()> {
    let nodes = client
        .retry(|c| async move { c.nodes().list_nodes(ListNodesRequest {}).await })
        .await?
        .nodes;
    let jobs = client.all_jobs(ListJobsRequest::default()).await?;
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
                    "schedulable": super::node::schedulable(n),
                    "cordoned": n.cordoned,
                    "draining": n.draining,
                    "drain_deadline_ms": n.drain_deadline_ms,
                    "live_jobs": n.live_jobs,
                    "cpus": n.millicpus as f64 / 1000.0,
                    "cpus_held": n.millicpus_held as f64 / 1000.0,
                    "memory_bytes": n.memory_bytes,
                    "memory_held_bytes": n.memory_held_bytes,
                    "numa_nodes": n.numa_nodes,
                    "agent_addr": n.agent_addr,
                    "gpu_backend": n.gpu_backend,
                    "docker_version": n.docker_version,
                    "last_seen_ms_ago": n.last_seen_ms_ago,
                    "labels": n.labels,
                    "daemon": n.daemon.as_ref().map(|d| json!({
                        "version": d.version, "root_dir": d.root_dir,
                        "storage_driver": d.storage_driver, "cgroup_driver": d.cgroup_driver,
                        "default_runtime": d.default_runtime, "runtimes": d.runtimes,
                        "nvidia_runtime": d.nvidia_runtime,
                        "http_proxy": d.http_proxy, "https_proxy": d.https_proxy, "no_proxy": d.no_proxy,
                    })),
                    "warnings": warnings(n),
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
        // CPU and memory held by jobs of what the host offers.
        let cpu_mem = if n.millicpus == 0 {
            "-".to_string()
        } else {
            format!(
                "{}/{} CPU, {}/{}",
                cpus(n.millicpus_held),
                cpus(n.millicpus),
                bytes(n.memory_held_bytes),
                bytes(n.memory_bytes)
            )
        };
        let status = match super::node::schedulable(n) {
            "schedulable" => status_word(n.status).to_string(),
            admin => format!("{},{admin}", status_word(n.status)),
        };
        if n.gpus.is_empty() {
            rows.push(vec![
                n.name.clone(),
                status.clone(),
                "-".into(),
                "(no GPUs)".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                cpu_mem.clone(),
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
                cpu_mem.clone(),
                disk.clone(),
            ]);
        }
    }
    println!(
        "{}",
        table(
            &[
                "NODE",
                "STATUS",
                "GPU",
                "MODEL",
                "MEMORY",
                "UTIL",
                "HELD BY",
                "CPU / RAM HELD",
                "DISK"
            ],
            rows
        )
    );
    for n in nodes.iter().filter(|n| n.cordoned) {
        println!("{}", super::node::describe(n));
    }
    if args.verbose {
        for n in &nodes {
            println!();
            verbose(n);
        }
    }
    Ok(())
}

/// Thousandths of a core as a number of CPUs ("1.5").
fn cpus(milli: u64) -> String {
    let s = format!("{:.3}", milli as f64 / 1000.0);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A node's daemon, for a person checking a host.
fn verbose(n: &Node) {
    let labels = if n.labels.is_empty() {
        "-".to_string()
    } else {
        n.labels.join(",")
    };
    println!(
        "{} ({}): agent {}, GPUs via {}, labels {}",
        n.name,
        status_word(n.status),
        n.agent_addr,
        n.gpu_backend,
        labels
    );
    let Some(d) = &n.daemon else {
        println!("  daemon: not reported yet");
        return;
    };
    let disk = n.disk.as_ref().map_or(String::new(), |k| {
        format!(
            " ({} free of {})",
            bytes(k.free_bytes),
            bytes(k.total_bytes)
        )
    });
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    println!("  docker {}, data root {}{}", d.version, d.root_dir, disk);
    println!(
        "  storage driver {}, cgroup driver {}",
        or_dash(&d.storage_driver),
        or_dash(&d.cgroup_driver)
    );
    println!(
        "  runtimes {} (default {}), nvidia runtime: {}",
        d.runtimes.join(", "),
        or_dash(&d.default_runtime),
        if d.nvidia_runtime { "yes" } else { "no" }
    );
    println!(
        "  proxy: http {}, https {}, no_proxy {}",
        or_dash(&d.http_proxy),
        or_dash(&d.https_proxy),
        or_dash(&d.no_proxy)
    );
    for w in warnings(n) {
        println!("  warning: {w}");
    }
}

/// What looks wrong with a node, in words that say what to do.
fn warnings(n: &Node) -> Vec<String> {
    let mut w = Vec::new();
    if n.status != NodeStatus::Ready as i32 {
        w.push("the agent is not reporting: is berth-agent running there?".to_string());
    }
    if let Some(d) = &n.daemon {
        if n.gpu_backend == "nvml" && !d.nvidia_runtime {
            w.push("NVIDIA GPUs but no nvidia runtime: if GPU jobs cannot see their GPUs, install nvidia-container-toolkit and run `nvidia-ctk runtime configure --runtime=docker`".into());
        }
        if !d.default_runtime.is_empty() && !d.runtimes.contains(&d.default_runtime) {
            w.push(format!(
                "the default runtime {:?} is not among the daemon's runtimes",
                d.default_runtime
            ));
        }
    }
    if let Some(k) = &n.disk {
        if k.total_bytes > 0 && k.free_bytes < k.total_bytes / 10 {
            w.push(format!(
                "the Docker data root {} is {}% full: berth image gc, or move data-root to a bigger disk",
                k.docker_root_dir,
                100 - k.free_bytes * 100 / k.total_bytes
            ));
        }
    }
    w
}

fn status_word(s: i32) -> &'static str {
    match NodeStatus::try_from(s) {
        Ok(NodeStatus::Ready) => "ready",
        Ok(NodeStatus::Down) => "down",
        _ => "unknown",
    }
}
