//! `--restart` policies on the real daemon: each restart is a new attempt
//! (a new container), after a backoff; a user's stop ends it.

use berth_tests::*;

#[test]
fn on_failure_restarts_up_to_its_limit_and_always_until_stopped() {
    let mut c = Cluster::start();
    let node = c.add_agent(2);
    let job = c.run_detached(&[
        "--restart",
        "on-failure:2",
        IMAGE,
        "sh",
        "-c",
        "echo try; exit 1",
    ]);
    let done = c.wait_state(&job, "exited");
    assert_eq!(
        (done["restarts"].as_u64(), done["exit_code"].as_i64()),
        (Some(2), Some(1)),
        "{done}"
    );
    // One container per attempt, each earlier one removed once the next
    // is placed: the last attempt's is what stays (for logs and cp).
    let ours = wait_for("only the last attempt's container", DEADLINE, || {
        let ours: Vec<serde_json::Value> = docker_containers(&node)
            .into_iter()
            .filter_map(|id| docker_inspect_opt(&id))
            .filter(|c| c["Config"]["Labels"]["berth.job"] == job.as_str())
            .collect();
        (ours.len() == 1).then_some(ours)
    });
    assert_eq!(ours[0]["Config"]["Labels"]["berth.attempt"], "2");

    let forever = c.run_detached(&["--restart", "always", IMAGE, "true"]);
    wait_for("two restarts", DEADLINE, || {
        (c.job(&forever)["restarts"].as_u64()? >= 2).then_some(())
    });
    let ps = c.berth(&["ps"]);
    let table = String::from_utf8_lossy(&ps.stdout);
    assert!(
        table.contains("Restarting") || table.contains("restarted"),
        "{table}"
    );
    assert!(c.berth(&["stop", &forever]).status.success());
    let stopped = c.wait_state(&forever, "cancelled");
    let n = stopped["restarts"].as_u64().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(
        c.job(&forever)["restarts"].as_u64(),
        Some(n),
        "no restart after a stop"
    );

    let out = c.berth(&["run", "-d", "--restart", "sometimes", IMAGE, "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("on-failure[:N]"));
}

#[test]
fn jobs_on_a_lost_host_fail_or_restart_elsewhere() {
    let mut c = Cluster::start_with(1, &["--node-lost-after", "6s"]);
    let first = c.add_agent(2);
    let keep = c.run_detached(&["--gpus", "1", "--restart", "always", IMAGE, "sleep", "300"]);
    let once = c.run_detached(&["--gpus", "1", IMAGE, "sleep", "300"]);
    for j in [&keep, &once] {
        assert_eq!(c.wait_state(j, "running")["node"], first.as_str());
    }
    let second = c.add_agent(1);
    c.kill_agent(&first);
    remove_node_containers(&first);
    // After --node-lost-after: the job without a policy fails with
    // the reason; the one with `always` runs again on the other host.
    let failed = c.wait_state(&once, "failed");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("stopped reporting"),
        "{failed}"
    );
    let moved = wait_for("the restarted job on the other host", DEADLINE, || {
        let j = c.job(&keep);
        (j["state"] == "running" && j["node"] == second.as_str()).then_some(j)
    });
    assert_eq!(moved["restarts"], 1, "{moved}");
}
