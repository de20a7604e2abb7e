//! Accounting: `berth usage` after jobs of known length on known GPU
//! counts, before and after retention forgets the jobs; running jobs
//! count until now; the server refuses an empty window.

use berth_tests::*;
use serde_json::Value;

fn usage(c: &Cluster, token: &str, args: &[&str]) -> Value {
    let out = c.berth_as(token, &[&["usage", "-o", "json"], args].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn gpu_seconds(v: &Value, key: &str) -> f64 {
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == key)
        .unwrap_or_else(|| panic!("no row {key}: {v}"))["gpu_seconds"]
        .as_f64()
        .unwrap()
}

fn within_5_percent(got: f64, truth: f64, what: &str) {
    assert!(
        (got - truth).abs() <= truth * 0.05,
        "{what}: {got:.2} GPU-seconds, the truth is {truth}"
    );
}

#[test]
fn usage_counts_gpu_seconds_per_user_and_outlives_job_retention() {
    ensure_image();
    let mut c = Cluster::start_with(1, &["--job-retention", "2s"]);
    c.add_agent(4);
    let alice = c.token("alice", "user");
    let bob = c.token("bob", "user");
    let viewer = c.token("watcher", "viewer");
    // Known lengths on known GPU counts: the truth is sleep × GPUs.
    let run = |token: &str, gpus: &str, secs: &str| {
        c.run_detached_as(token, &["--gpus", gpus, IMAGE, "sleep", secs])
    };
    let a = run(&alice, "2", "4");
    let b = run(&bob, "1", "6");
    for job in [&a, &b] {
        c.wait_state(job, "exited");
    }
    let before = usage(&c, &viewer, &[]);
    within_5_percent(gpu_seconds(&before, "alice"), 8.0, "alice: 2 GPUs × 4 s");
    within_5_percent(gpu_seconds(&before, "bob"), 6.0, "bob: 1 GPU × 6 s");
    eprintln!(
        "usage: alice {:.3} GPU-s (truth 8), bob {:.3} GPU-s (truth 6)",
        gpu_seconds(&before, "alice"),
        gpu_seconds(&before, "bob")
    );
    let by_day = usage(&c, &viewer, &["--by", "day"]);
    assert_eq!(by_day["rows"].as_array().unwrap().len(), 1, "{by_day}");
    let by_model = usage(&c, &viewer, &["--by", "model", "--user", "bob"]);
    within_5_percent(
        gpu_seconds(&by_model, "Simulated GPU"),
        6.0,
        "bob's, by model",
    );

    // Retention forgets the jobs; the ledger keeps what they used.
    wait_for("the jobs forgotten", DEADLINE, || {
        let out = c.berth(&["ps", "-a", "-o", "json"]);
        let ids = job_fields(&out.stdout, "id")?;
        (!ids.contains(&a) && !ids.contains(&b)).then_some(())
    });
    let after = usage(&c, &viewer, &[]);
    assert_eq!(after["rows"], before["rows"], "the same after retention");

    // A running job counts until now; CSV for spreadsheets.
    let carol = c.token("carol", "user");
    let running = run(&carol, "1", "300");
    c.wait_state(&running, "running");
    let now = wait_for("carol's running job counted", DEADLINE, || {
        let v = usage(&c, &viewer, &["--user", "carol"]);
        (gpu_seconds(&v, "carol") > 0.5).then_some(v)
    });
    assert_eq!(now["rows"][0]["runs"], 1);
    let out = c.berth_as(&viewer, &["usage", "-o", "csv"]);
    let csv = String::from_utf8_lossy(&out.stdout);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("user,runs,gpu_seconds,gpu_memory_gib_seconds,cpu_seconds,memory_gib_seconds,wall_seconds")
    );
    assert!(lines.any(|l| l.starts_with("alice,1,")), "{csv}");
    let out = c.berth_as(&viewer, &["usage", "--by", "user"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("GPU-HOURS") && table.contains("TOTAL"),
        "{table}"
    );

    // Bad input: the server refuses an empty window, saying why.
    let out = c.berth_as(
        &viewer,
        &["usage", "--since", "2026-12-01", "--until", "2026-11-01"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the window is empty"), "{err}");
    let out = c.berth_as(&viewer, &["usage", "--since", "last tuesday"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a date"));
    // Without a token: refused.
    let out = c.berth_anonymous(&["usage"]);
    assert!(!out.status.success());
    c.berth(&["stop", &running]);
}
