//! A canonical projection of a `State` (records and derived indexes) into
//! JSON, in field names of its own. The log-compatibility test compares
//! what a replayed log yields with what the controller that wrote the log
//! got (`testdata/log/*/expected.json`); the projection, not the state's
//! Rust types, is the contract, so the types may change while the test
//! keeps proving that old logs mean the same.

use serde_json::{json, Value};

use super::{Applied, JobRecord, NodeRecord, Rejection, State};

/// What applying one entry did, as text.
pub fn outcome(r: &Result<Applied, Rejection>) -> Value {
    match r {
        Ok(a) => json!({
            "jobs": a.jobs,
            "node": a.node,
            "rejected": a.rejected.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        }),
        Err(e) => json!({ "error": e.to_string() }),
    }
}

/// `view`, plus what later versions added, only where set: the projection
/// of a state an older version wrote is unchanged.
pub fn view(s: &State) -> Value {
    let mut v = view_v1(s);
    if !s.cordons.is_empty() {
        v["cordons"] = json!(s
            .cordons
            .iter()
            .map(|(n, c)| json!([n, c.at_ms, c.drain_deadline_ms]))
            .collect::<Vec<_>>());
    }
    if !s.tokens.is_empty() {
        v["tokens"] = json!(s
            .tokens
            .values()
            .map(|t| json!([t.id, t.user, t.role, t.hash, t.created_ms, t.expires_ms]))
            .collect::<Vec<_>>());
    }
    if let Some(p) = &s.policy {
        // A rule added later reads as its default from older logs: shown
        // only when it differs, so old fixtures keep their projection.
        let mut p = p.clone();
        let default = berth_proto::policy::Privileges::default();
        if p.privileges.gang_network_host == default.gang_network_host {
            p.privileges.gang_network_host.clear();
        }
        let text = p.to_toml().replace("gang_network_host = []\n", "");
        v["policy"] = json!([text, s.policy_index]);
    }
    // Version 6: CPU and memory held per host, where any is.
    let held: Vec<Value> = s
        .nodes
        .keys()
        .filter(|n| s.held_on(n) != (0, 0))
        .map(|n| json!([n, s.held_on(n).0, s.held_on(n).1]))
        .collect();
    if !held.is_empty() {
        v["derived"]["held"] = json!(held);
    }
    if !s.usage.is_empty() {
        let u = &s.usage;
        let totals = |t: &super::usage::Totals| {
            json!([
                t.runs,
                t.wall_ms,
                t.gpu_ms,
                t.gpu_mib_ms,
                t.cpu_ms,
                t.memory_mib_ms
            ])
        };
        v["usage"] = json!({
            "runs": u.runs.iter().map(|r| json!([
                r.job_id, r.name, r.user, r.node, r.model, r.gpus, r.gpu_memory_bytes,
                r.nano_cpus, r.memory_bytes, r.started_at_ms, r.finished_at_ms, r.outcome,
                r.exit_code,
            ])).collect::<Vec<_>>(),
            "days": u.days.iter().map(|d| json!([d.day_ms, d.user, d.node, d.model, totals(&d.totals)])).collect::<Vec<_>>(),
            "detail_from_ms": u.detail_from_ms,
        });
    }
    v
}

fn view_v1(s: &State) -> Value {
    let uuids: Vec<&str> = s
        .nodes
        .values()
        .flat_map(|n| n.gpus.iter().map(|g| g.uuid.as_str()))
        .collect();
    let users: std::collections::BTreeSet<&str> =
        s.jobs.values().map(|j| j.spec.user.as_str()).collect();
    json!({
        "cluster_id": s.cluster_id,
        "applied_index": s.applied_index,
        "nodes": s.nodes.values().map(node).collect::<Vec<_>>(),
        "jobs": s.jobs.values().map(job).collect::<Vec<_>>(),
        "queue": s.queue,
        "requests": s.requests,
        "groups": s.groups.values().map(|g| json!({
            "id": g.id, "name": g.name, "kind": format!("{:?}", g.kind),
            "tasks": g.tasks, "max_running": g.max_running,
            "submitted_at_ms": g.submitted_at_ms,
            "live": s.group_live(&g.id),
        })).collect::<Vec<_>>(),
        "quotas": s.quotas,
        "derived": {
            "gpu_holder": uuids.iter().map(|u| json!([u, s.gpu_holder(u)])).collect::<Vec<_>>(),
            "slices": uuids.iter().map(|u| json!([u, s.gpu_slices(u)])).collect::<Vec<_>>(),
            "user_gpus": users.iter().map(|u| json!([u, s.user_gpus(u)])).collect::<Vec<_>>(),
            "names": s.jobs.values().map(|j| json!([j.name, s.live_job_named(&j.name)])).collect::<Vec<_>>(),
            "node_jobs": s.nodes.keys().map(|n| json!([
                n,
                s.jobs_on(n).map(|j| j.id.as_str()).collect::<Vec<_>>(),
                s.ports_on(n).collect::<Vec<_>>(),
                s.exclusive_holder(n),
            ])).collect::<Vec<_>>(),
        },
    })
}

fn node(n: &NodeRecord) -> Value {
    let mut v = json!({
        "name": n.name, "agent_addr": n.agent_addr, "gpu_backend": n.gpu_backend.word(),
        "docker_version": n.docker_version, "labels": n.labels,
        "gpus": n.gpus.iter().map(|g| json!({
            "index": g.index, "uuid": g.uuid, "model": g.model,
            "memory_total_bytes": g.memory_total_bytes, "group": g.group,
        })).collect::<Vec<_>>(),
    });
    // Version 6: what the host offers beside GPUs.
    set_where_set(
        &mut v,
        json!({"millicpus": n.millicpus, "memory_bytes": n.memory_bytes, "numa_nodes": n.numa_nodes}),
    );
    v
}

fn job(j: &JobRecord) -> Value {
    let mut v = json!({
        "id": j.id, "name": j.name, "state": j.state.word(), "node": j.node,
        "gpus": j.gpus.iter().map(|g| json!([g.index, g.uuid])).collect::<Vec<_>>(),
        "container_id": j.container_id, "exit_code": j.exit_code, "message": j.message,
        "submitted_at_ms": j.submitted_at_ms, "started_at_ms": j.started_at_ms,
        "finished_at_ms": j.finished_at_ms, "placed_index": j.placed_index,
        "stop_index": j.stop_index, "seq": j.seq, "group": j.group,
        "task_index": j.task_index, "task_env": j.task_env, "requeue": j.requeue,
        "preemptions": j.preemptions, "restarts": j.restarts,
        "not_before_ms": j.not_before_ms,
    });
    v["spec"] = spec(j);
    if !j.requeue_reason.is_empty() {
        v["requeue_reason"] = json!(j.requeue_reason);
    }
    v
}

fn spec(j: &JobRecord) -> Value {
    let s = &j.spec;
    let mut v = json!({
        "image": s.image, "command": s.command, "entrypoint": s.entrypoint,
        "env": s.env,
        "mounts": s.mounts.iter().map(|m| json!([m.source, m.target, m.read_only])).collect::<Vec<_>>(),
        "ports": s.ports.iter().map(|p| json!([p.host_ip, p.host_port, p.container_port, p.protocol])).collect::<Vec<_>>(),
        "shm_size_bytes": s.shm_size_bytes, "gpus": s.gpus, "workdir": s.workdir,
        "tty": s.tty, "stdin": s.stdin, "gpu_model": s.gpu_model,
    });
    let more = json!({
        "gpu_memory_bytes": s.gpu_memory_bytes, "constraints": s.constraints,
        "exclusive": s.exclusive, "priority": s.priority, "preemptible": s.preemptible,
        "user": s.user, "nodes": s.nodes, "master_port": s.master_port,
        "array": s.array.as_ref().map(|a| json!([a.start, a.end, a.max_running])),
        // Empty for no policy, as version 1 wrote it.
        "restart": s.restart.as_spec(), "memory_bytes": s.memory_bytes, "nano_cpus": s.nano_cpus,
    });
    for (k, x) in more.as_object().expect("an object") {
        v[k] = x.clone();
    }
    // Later versions' fields, where set.
    let later = json!({
        "role": s.role, "run_as": s.run_as, "privileged": s.privileged,
        "cap_add": s.cap_add, "devices": s.devices, "network": s.network, "ipc": s.ipc,
        "on_host_lost": s.on_host_lost.word(), "pids_limit": s.pids_limit,
        "hostname": s.hostname,
        "ulimits": s.ulimits.iter().map(|u| json!([u.name, u.soft, u.hard])).collect::<Vec<_>>(),
        "cap_drop": s.cap_drop, "labels": s.labels, "auto_remove": s.auto_remove,
        "expose": s.expose, "gpus_all": s.gpus_all,
        // The job's, from its placement (version 6).
        "picked_ports": j.picked_ports, "held_millicpus": j.millicpus,
        "held_memory_bytes": j.memory_bytes,
    });
    set_where_set(&mut v, later);
    v
}

/// Copies the fields of `more` that are set into `v`.
fn set_where_set(v: &mut Value, more: Value) {
    for (k, x) in more.as_object().expect("an object") {
        let unset = x == &json!("")
            || x == &json!(false)
            || x == &json!(0)
            || x == &json!([])
            || x == &json!({});
        if !unset {
            v[k] = x.clone();
        }
    }
}
