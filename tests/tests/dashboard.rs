//! The web dashboard in a real browser: Debian's Chromium, headless,
//! driven through the DevTools protocol (tests/scripts/dashboard_browser.py)
//! from the link `berth dashboard` prints. The page loads without console
//! errors, shows each host and GPU and a running job with its user, and
//! updates by itself when a job starts; a screenshot is kept under
//! target/tmp. Then who may read what: no token, a viewer, the owner.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use berth_tests::*;
use serde_json::Value;

#[test]
fn the_dashboard_shows_hosts_gpus_and_holders_and_updates_itself() {
    ensure_image();
    let mut c = Cluster::start_with(1, &["--metrics-listen", "127.0.0.1:0"]);
    let node = c.add_agent_with("2:A100-SXM4-80GB:80G", &[]);
    let alice = c.token("alice", "user");
    let bob = c.token("bob", "user");
    let viewer = c.token("watcher", "viewer");
    let job = c.run_detached_as(
        &alice,
        &[
            "--gpus",
            "1",
            "--name",
            "train-a",
            IMAGE,
            "sh",
            "-c",
            "echo epoch 1 of alice; sleep 300",
        ],
    );
    c.wait_state(&job, "running");

    let out = c.berth_as(&alice, &["dashboard"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        url.starts_with("https://127.0.0.1:") && url.contains("/?token=berth_"),
        "{url}"
    );

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/dashboard_browser.py");
    let mut browser = Command::new("python3")
        .arg(script)
        .arg(&url)
        .arg(c.tls.join("ca.pem"))
        .arg(&shot)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(browser.stdout.take().unwrap()).lines();
    let first: Value =
        serde_json::from_str(&lines.next().expect("the browser's first report").unwrap()).unwrap();
    assert_eq!(
        first["errors"],
        serde_json::json!([]),
        "console errors: {first}"
    );
    assert!(
        !first["url"].as_str().unwrap().contains("token"),
        "the token left the address bar: {first}"
    );
    assert_eq!(first["cookie_http_only"], true, "{first}");
    let text = first["text"].as_str().unwrap();
    for want in [
        node.as_str(),
        "GPU 0",
        "GPU 1",
        "train-a",
        "alice",
        "Queue",
        "GPU-hours per user",
    ] {
        assert!(text.contains(want), "{want:?} not on the page:\n{text}");
    }

    // A job that starts now appears without a reload (the event stream).
    c.run_detached_as(
        &bob,
        &["--gpus", "1", "--name", "bobs-job", IMAGE, "sleep", "300"],
    );
    let stdin = browser.stdin.as_mut().unwrap();
    writeln!(stdin, "bobs-job").unwrap();
    let second: Value =
        serde_json::from_str(&lines.next().expect("the browser's second report").unwrap()).unwrap();
    assert_eq!(
        second["found"], true,
        "the page did not update: {}",
        second["text"]
    );
    assert_eq!(
        second["errors"],
        serde_json::json!([]),
        "console errors: {second}"
    );
    assert!(browser.wait().unwrap().success());
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a real screenshot"
    );
    eprintln!("dashboard screenshot: {}", shot.display());

    // Who may read what, over plain HTTPS.
    let web = std::fs::read_to_string(c.controllers[0].dir.join("metrics.addr")).unwrap();
    let ca = c.tls.join("ca.pem");
    let anon = https_get(&web, "127.0.0.1", &ca, None, "/");
    assert_eq!(anon["status"], 401, "{anon}");
    assert!(anon["body"].as_str().unwrap().contains("Sign in"), "{anon}");
    let page = format!("/jobs/{job}");
    let as_viewer = https_get(&web, "127.0.0.1", &ca, Some(&viewer), &page);
    assert_eq!(as_viewer["status"], 200);
    let body = as_viewer["body"].as_str().unwrap();
    assert!(
        body.contains("train-a") && !body.contains("epoch 1 of alice"),
        "a viewer reads no logs: {body}"
    );
    assert!(
        body.contains("PERMISSION_DENIED") || body.contains("may not") || body.contains("owner"),
        "{body}"
    );
    let as_owner = https_get(&web, "127.0.0.1", &ca, Some(&alice), &page);
    assert!(
        as_owner["body"]
            .as_str()
            .unwrap()
            .contains("epoch 1 of alice"),
        "{as_owner}"
    );
    c.berth(&["stop", &job, "bobs-job"]);
}
