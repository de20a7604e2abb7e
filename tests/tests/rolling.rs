//! Planned stops of controllers: a leader sent SIGTERM hands leadership to
//! the most up-to-date follower before it stops (raft's leader transfer),
//! so a rolling restart of all three controllers under four submit loops
//! costs no failed submission, loses none, doubles none; and an admin can
//! hand leadership over by hand (`berth controller transfer-leader`).

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_tests::*;

#[test]
fn a_rolling_restart_under_four_submit_loops_fails_nothing_and_loses_nothing() {
    let mut c = Cluster::start_replicated(3);
    c.add_agent(2);
    let stop = Arc::new(AtomicBool::new(false));
    let (addr, config) = (c.addr.clone(), c.config_path());
    let loops: Vec<_> = (0..4)
        .map(|l| {
            let (addr, config, stop) = (addr.clone(), config.clone(), stop.clone());
            std::thread::spawn(move || {
                let (mut done, mut failures, mut longest) =
                    (Vec::new(), Vec::new(), Duration::ZERO);
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let name = format!("roll{l}-{i}");
                    i += 1;
                    let start = Instant::now();
                    let out = Command::new(bin("berth"))
                        .env("BERTH_CONFIG", &config)
                        .env_remove("BERTH_TOKEN")
                        .args(["--addr", &addr, "run", "-d", "--name", &name, IMAGE, "true"])
                        .stdin(Stdio::null())
                        .output()
                        .unwrap();
                    longest = longest.max(start.elapsed());
                    if out.status.success() {
                        done.push(name);
                    } else {
                        failures.push(String::from_utf8_lossy(&out.stderr).to_string());
                    }
                }
                (done, failures, longest)
            })
        })
        .collect();
    // Each controller in turn, the leader among them: SIGTERM, start it
    // again, wait until it has caught up, then the next.
    let mut stops = Vec::new();
    for i in 0..c.controllers.len() {
        let was_leader = c.leader() == i;
        let took = c.stop_controller(i);
        stops.push((c.controllers[i].id, was_leader, took));
        c.start_controller(i);
        let own = c.controllers[i].addr.clone();
        wait_for("the restarted controller caught up", DEADLINE, || {
            let me = c.members(&own);
            let mine = me.iter().find(|m| m["role"] != "")?;
            (mine["role"] == "follower" || mine["role"] == "leader").then_some(())
        });
    }
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    let mut failures = Vec::new();
    let mut longest = Duration::ZERO;
    for t in loops {
        let (d, f, l) = t.join().unwrap();
        acknowledged.extend(d);
        failures.extend(f);
        longest = longest.max(l);
    }
    assert!(failures.is_empty(), "submissions failed: {failures:?}");
    assert!(
        stops.iter().any(|s| s.1),
        "the leader was among those stopped: {stops:?}"
    );
    let names: Vec<String> = wait_for("every job listed", DEADLINE, || {
        let out = c.berth(&["ps", "-a", "-o", "json"]);
        job_fields(&out.stdout, "name")
    });
    for n in &acknowledged {
        assert_eq!(
            names.iter().filter(|x| *x == n).count(),
            1,
            "{n}: lost or doubled"
        );
    }
    eprintln!(
        "rolling restart: {} submissions acknowledged, none failed; longest `berth run -d` {} ms; stops (id, was leader, SIGTERM to exit): {:?}",
        acknowledged.len(),
        longest.as_millis(),
        stops
    );
}

#[test]
fn an_admin_hands_leadership_over_by_hand() {
    let c = Cluster::start_replicated(3);
    let before = c.controllers[c.leader()].id;
    let target = c
        .controllers
        .iter()
        .map(|x| x.id)
        .find(|id| *id != before)
        .unwrap();
    let viewer = c.token("watcher", "viewer");
    let out = c.berth_as(
        &viewer,
        &["controller", "transfer-leader", &target.to_string()],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("admin"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = c.berth(&[
        "controller",
        "transfer-leader",
        &target.to_string(),
        "-o",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["leader_id"], target, "{v}");
    assert_eq!(c.controllers[c.leader()].id, target);
    eprintln!("transfer-leader {before} -> {target}: {} ms", v["took_ms"]);
    let out = c.berth(&["controller", "transfer-leader", "99"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not another voting member"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
