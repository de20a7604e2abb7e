//! Prometheus metrics: the controller's and an agent's `/metrics`, scraped
//! over HTTPS as Prometheus does and parsed by the Prometheus project's own
//! OpenMetrics parser (tests/scripts/scrape_metrics.py); who may read them.

use berth_tests::*;
use serde_json::Value;

fn scrape(c: &Cluster, addr: &str, server_name: &str, token: Option<&str>) -> Value {
    scrape_metrics(addr, server_name, &c.tls.join("ca.pem"), token)
}

use metric_family as family;
use metric_sample as sample;

#[test]
fn controller_and_agent_metrics_parse_and_name_who_holds_each_gpu() {
    ensure_image();
    let mut c = Cluster::start_with(1, &["--metrics-listen", "127.0.0.1:0"]);
    let node = c.add_agent_with("2:A100-SXM4-80GB:80G", &["--metrics-listen", "127.0.0.1:0"]);
    let ctl_metrics = std::fs::read_to_string(c.controllers[0].dir.join("metrics.addr")).unwrap();
    let alice = c.token("alice", "user");
    let viewer = c.token("watcher", "viewer");

    let job = c.run_detached_as(&alice, &["--gpus", "1", IMAGE, "sleep", "300"]);
    // Two GPUs asked with one free: it queues behind the first.
    c.run_detached_as(&alice, &["--gpus", "2", IMAGE, "true"]);
    c.wait_state(&job, "running");

    // Nobody, or a bad token: refused, with what to send.
    let anon = scrape(&c, &ctl_metrics, "127.0.0.1", None);
    assert_eq!(anon["status"], 401, "{anon}");
    assert!(
        anon["body"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer"),
        "{anon}"
    );
    let bad = scrape(&c, &ctl_metrics, "127.0.0.1", Some("berth_nothing_x"));
    assert_eq!(bad["status"], 401, "{bad}");

    // A viewer reads; the GPU holding the job names it and its user.
    let m = wait_for("the job's GPU in the metrics", DEADLINE, || {
        let m = scrape(&c, &ctl_metrics, "127.0.0.1", Some(&viewer));
        let util = m["families"]["berth_gpu_utilization_ratio"]["samples"].as_array()?;
        sample(
            util,
            "berth_gpu_utilization_ratio",
            &[("job_id", &job), ("user", "alice")],
        )?;
        Some(m)
    });
    assert_eq!(m["status"], 200);
    assert!(m["content_type"]
        .as_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    for name in [
        "berth_gpu_memory_used_bytes",
        "berth_gpu_memory_total_bytes",
        "berth_gpu_temperature_celsius",
        "berth_gpu_power_watts",
        "berth_gpu_utilization_ratio",
    ] {
        let s = family(&m, name, "gauge");
        assert_eq!(s.len(), 2, "{name}: one series per GPU: {s:?}");
        let held = sample(
            s,
            name,
            &[("node", &node), ("job_id", &job), ("user", "alice")],
        )
        .unwrap_or_else(|| panic!("{name}: no series for the job: {s:?}"));
        assert_eq!(held["labels"]["model"], "A100-SXM4-80GB");
        assert!(
            !held["labels"]["job_name"].as_str().unwrap().is_empty(),
            "{held}"
        );
        assert!(
            held["labels"]["uuid"].as_str().unwrap().starts_with("GPU-"),
            "{held}"
        );
        let free = sample(s, name, &[("node", &node), ("job_id", "")]);
        assert!(
            free.is_some(),
            "{name}: the free GPU has an empty job: {s:?}"
        );
    }
    let total = family(&m, "berth_gpu_memory_total_bytes", "gauge");
    assert_eq!(total[0]["value"], 80.0 * (1u64 << 30) as f64);

    let jobs = family(&m, "berth_jobs", "gauge");
    assert_eq!(
        sample(jobs, "berth_jobs", &[("state", "running")]).unwrap()["value"],
        1.0
    );
    assert_eq!(
        sample(jobs, "berth_jobs", &[("state", "queued")]).unwrap()["value"],
        1.0
    );
    assert_eq!(
        sample(jobs, "berth_jobs", &[("state", "failed")]).unwrap()["value"],
        0.0
    );
    let queue = family(&m, "berth_queue_jobs", "gauge");
    let q = sample(
        queue,
        "berth_queue_jobs",
        &[("user", "alice"), ("gpu_model", "any")],
    );
    assert_eq!(q.unwrap()["value"], 1.0, "{queue:?}");
    let gpus = family(&m, "berth_queue_gpus", "gauge");
    assert_eq!(
        sample(gpus, "berth_queue_gpus", &[("user", "alice")]).unwrap()["value"],
        2.0
    );
    let nodes = family(&m, "berth_nodes", "gauge");
    assert_eq!(
        sample(nodes, "berth_nodes", &[("status", "ready")]).unwrap()["value"],
        1.0
    );

    assert_eq!(family(&m, "berth_raft_is_leader", "gauge")[0]["value"], 1.0);
    assert!(
        family(&m, "berth_raft_term", "gauge")[0]["value"]
            .as_f64()
            .unwrap()
            >= 1.0
    );
    let applied = family(&m, "berth_raft_applied_index", "gauge")[0]["value"]
        .as_f64()
        .unwrap();
    assert!(applied > 3.0, "{applied}");
    family(&m, "berth_raft_apply_lag", "gauge");
    let proposals = family(&m, "berth_raft_proposals", "counter");
    let ok = sample(
        proposals,
        "berth_raft_proposals_total",
        &[("outcome", "applied")],
    )
    .unwrap();
    assert!(ok["value"].as_f64().unwrap() >= 3.0, "{proposals:?}");
    let latency = family(&m, "berth_raft_proposal_duration_seconds", "histogram");
    let count = sample(latency, "berth_raft_proposal_duration_seconds_count", &[]).unwrap();
    assert!(count["value"].as_f64().unwrap() >= 3.0);
    family(&m, "berth_raft_leader_changes", "counter");
    let placed = family(&m, "berth_scheduler_placements", "counter");
    assert!(placed[0]["value"].as_f64().unwrap() >= 1.0, "{placed:?}");
    let passes = family(&m, "berth_scheduler_pass_duration_seconds", "histogram");
    assert!(
        sample(passes, "berth_scheduler_pass_duration_seconds_count", &[]).unwrap()["value"]
            .as_f64()
            .unwrap()
            >= 1.0
    );
    family(&m, "berth_node_docker_disk_free_bytes", "gauge");
    family(&m, "berth_image_gc_removals", "counter");

    // A revoked token stops reading at once (the replicated token table).
    let out = c.berth(&["token", "revoke", "watcher"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let revoked = scrape(&c, &ctl_metrics, "127.0.0.1", Some(&viewer));
    assert_eq!(revoked["status"], 401, "{revoked}");
    let viewer = c.token("watcher2", "viewer");

    // The agent's own port: its certificate names NODE.node.berth; the
    // token is checked with the controller.
    let log = c.log_of(&node);
    let agent_metrics = wait_for("the agent's metrics address", DEADLINE, || {
        let text = std::fs::read_to_string(&log).ok()?;
        let line = text.lines().find(|l| l.contains("serving metrics"))?;
        let rest = &line[line.find("https://")? + "https://".len()..];
        Some(rest[..rest.find("/metrics")?].to_string())
    });
    let server_name = format!("{node}.node.berth");
    let anon = scrape(&c, &agent_metrics, &server_name, None);
    assert_eq!(anon["status"], 401, "{anon}");
    let bad = scrape(&c, &agent_metrics, &server_name, Some("berth_nothing_x"));
    assert_eq!(bad["status"], 401, "{bad}");
    let a = scrape(&c, &agent_metrics, &server_name, Some(&viewer));
    assert_eq!(a["status"], 200, "{a}");
    let actions = family(&a, "berth_agent_reconcile_actions", "counter");
    let created = sample(
        actions,
        "berth_agent_reconcile_actions_total",
        &[("action", "create"), ("outcome", "ok"), ("node", &node)],
    );
    assert!(
        created.is_some_and(|s| s["value"].as_f64().unwrap() >= 1.0),
        "{actions:?}"
    );
    let reports = family(&a, "berth_agent_reports", "counter");
    assert!(sample(reports, "berth_agent_reports_total", &[("outcome", "ok")]).is_some());
    family(&a, "berth_agent_reconcile_duration_seconds", "histogram");
    assert_eq!(family(&a, "berth_agent_fenced", "gauge")[0]["value"], 0.0);
    family(&a, "berth_agent_image_transfers", "counter");
    family(&a, "berth_agent_gc_images_removed", "counter");
}
