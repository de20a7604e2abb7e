//! Tables for people, JSON for programs.

use berth_proto::v1::{Job, JobState};
use comfy_table::{presets::NOTHING, Table};
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_preset(NOTHING).set_header(header.to_vec());
    for r in rows {
        t.add_row(r);
    }
    // comfy-table pads the first column by one space; docker's tables do not.
    t.to_string()
        .lines()
        .map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn state(job: &Job) -> JobState {
    JobState::try_from(job.state).unwrap_or(JobState::Unspecified)
}

/// A job as JSON, with the state as a word (not the enum's number).
pub fn job_json(j: &Job) -> Value {
    let spec = j.spec.clone().unwrap_or_default();
    let mut v = json!({
        "id": j.id,
        "name": j.name,
        "state": state(j).word(),
        "node": j.node,
        "gpus": j.gpus.iter().map(|g| json!({"index": g.index, "uuid": g.uuid})).collect::<Vec<_>>(),
        "container_id": j.container_id,
        "exit_code": j.exit_code,
        "message": j.message,
        "queue_position": j.queue_position,
        "submitted_at_ms": j.submitted_at_ms,
        "started_at_ms": j.started_at_ms,
        "finished_at_ms": j.finished_at_ms,
        "group_id": j.group_id,
        "task_index": j.task_index,
        "preemptions": j.preemptions,
        "restarts": j.restarts,
        "task_env": j.task_env,
        "pull": j.pull.as_ref().map(|p| json!({
            "image": p.image, "done_bytes": p.done_bytes, "total_bytes": p.total_bytes,
            "source": p.source, "bytes_per_second": p.bytes_per_second, "message": p.message,
        })),
        "spec": {
            "image": spec.image,
            "command": spec.command,
            "entrypoint": spec.entrypoint,
            "env": spec.env,
            "gpus": spec.gpus,
            "shm_size_bytes": spec.shm_size_bytes,
            "mounts": spec.mounts.iter().map(|m| json!({"source": m.source, "target": m.target, "read_only": m.read_only})).collect::<Vec<_>>(),
            "ports": spec.ports.iter().map(|p| json!({"host_ip": p.host_ip, "host_port": p.host_port, "container_port": p.container_port, "protocol": p.protocol})).collect::<Vec<_>>(),
            "gpu_model": spec.gpu_model,
            "gpu_memory_bytes": spec.gpu_memory_bytes,
            "constraints": spec.constraints,
            "exclusive": spec.exclusive,
            "priority": spec.priority,
            "preemptible": spec.preemptible,
            "user": spec.user,
            "nodes": spec.nodes,
            "restart": spec.restart,
            "array":  spec.array.as_ref().map(|a| json!({"start": a.start, "end": a.end, "max_running": a.max_running})),
        },
    });
    // Apart: one more field in the literal passes json!'s recursion limit.
    v["spec"]["memory_bytes"] = json!(spec.memory_bytes);
    v["spec"]["nano_cpus"] = json!(spec.nano_cpus);
    v["spec"]["on_host_lost"] = json!(spec.on_host_lost);
    v["spec"]["pids_limit"] = json!(spec.pids_limit);
    v["spec"]["run_as"] = json!(spec.run_as);
    v["spec"]["network"] = json!(spec.network);
    v["spec"]["ipc"] = json!(spec.ipc);
    v["spec"]["privileged"] = json!(spec.privileged);
    v["spec"]["cap_add"] = json!(spec.cap_add);
    v["spec"]["cap_drop"] = json!(spec.cap_drop);
    v["spec"]["devices"] = json!(spec.devices);
    v["spec"]["hostname"] = json!(spec.hostname);
    v["spec"]["ulimits"] = json!(spec
        .ulimits
        .iter()
        .map(|u| json!({"name": u.name, "soft": u.soft, "hard": u.hard}))
        .collect::<Vec<_>>());
    v["spec"]["labels"] = json!(spec.labels);
    v["spec"]["rm"] = json!(spec.auto_remove);
    v["spec"]["expose"] = json!(spec.expose);
    v["spec"]["gpus_all"] = json!(spec.gpus_all);
    // Where it is reachable once placed, with the ports Berth picked.
    v["published"] = json!(j
        .published
        .iter()
        .map(|p| json!({"host_ip": p.host_ip, "host_port": p.host_port, "container_port": p.container_port, "protocol": p.protocol}))
        .collect::<Vec<_>>());
    v["reserved"] = json!({"cpus": j.reserved_millicpus as f64 / 1000.0, "memory_bytes": j.reserved_memory_bytes});
    v
}

/// docker ps's PORTS column: "0.0.0.0:30001->8080/tcp, ...".
pub fn ports_text(j: &Job) -> String {
    j.published
        .iter()
        .map(|p| {
            let proto = if p.protocol.is_empty() {
                "tcp"
            } else {
                &p.protocol
            };
            let ip = if p.host_ip.is_empty() {
                "0.0.0.0"
            } else {
                &p.host_ip
            };
            format!("{ip}:{}->{}/{proto}", p.host_port, p.container_port)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// "3 seconds ago", docker-style.
pub fn ago(ms: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    format!("{} ago", since(ms))
}

/// Now, in unix millis (`fallback` if the clock is before 1970).
fn now_ms(fallback: i64) -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(fallback)
}

/// "in 3 minutes", or "now" once `ms` (unix millis) has passed.
pub fn until(ms: i64) -> String {
    let now = now_ms(ms);
    if ms <= now {
        return "now".into();
    }
    // `since` of the mirror image in the past reads the same.
    format!("in {}", since(2 * now - ms).to_lowercase())
}

/// "3 seconds", "Less than a second": time elapsed since `ms` (unix millis).
pub fn since(ms: i64) -> String {
    let now = now_ms(ms);
    let s = ((now - ms) / 1000).max(0);
    match s {
        0..=1 => "Less than a second".into(),
        2..=59 => format!("{s} seconds"),
        60..=3599 => format!("{} minutes", s / 60),
        3600..=86399 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86400),
    }
}

pub fn bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}
