//! `berth update` and `berth logs -f` through restarts, on the real daemon:
//! limits change in the running container (the same container), what
//! cannot change live is refused with nothing changed, and a followed job's
//! output goes on through its restarts.

use std::process::Command;

use berth_tests::*;

fn limits(container: &str) -> (i64, i64) {
    let host = &docker_inspect(container)["HostConfig"];
    (
        host["Memory"].as_i64().unwrap(),
        host["NanoCpus"].as_i64().unwrap(),
    )
}

fn refused(out: &std::process::Output, says: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(says),
        "wanted {says:?}: {err}"
    );
}

#[test]
fn update_changes_limits_live_and_refuses_what_cannot_change() {
    let mut c = Cluster::start();
    c.add_agent(1);
    let job = c.run_detached(&["-m", "64m", "--cpus", "0.5", IMAGE, "sleep", "300"]);
    let running = c.wait_state(&job, "running");
    let container = running["container_id"].as_str().unwrap().to_string();
    assert_eq!(limits(&container), (64 << 20, 500_000_000));

    let out = c.berth(&["update", "--memory", "128m", "--cpus", "1", &job]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        limits(&container),
        (128 << 20, 1_000_000_000),
        "changed in place"
    );
    let after = c.job(&job);
    assert_eq!(after["container_id"], container.as_str(), "not recreated");
    assert_eq!(after["spec"]["memory_bytes"], 128 << 20);

    // What docker cannot change live, bad values, and what the daemon
    // refuses: each a clear error, and nothing changed.
    refused(
        &c.berth(&["update", "--gpus", "2", &job]),
        "GPUs cannot change",
    );
    refused(
        &c.berth(&["update", "-v", "/tmp:/data", &job]),
        "mounts cannot change",
    );
    refused(&c.berth(&["update", "--memory", "1m", &job]), "6MiB");
    refused(
        &c.berth(&["update", "--cpus", "4096", &job]),
        "refused the update",
    );
    refused(
        &c.berth(&["update", "--restart", "sometimes", &job]),
        "on-failure[:N]",
    );
    refused(&c.berth(&["update", &job]), "nothing to update");
    assert_eq!(limits(&container), (128 << 20, 1_000_000_000));
    let unchanged = c.job(&job);
    assert_eq!(unchanged["spec"]["nano_cpus"], 1_000_000_000u64);
    assert_eq!(unchanged["spec"]["restart"], "");

    let json = c.json(&["update", "--restart", "on-failure:3", &job]);
    assert_eq!(json[0]["spec"]["restart"], "on-failure:3", "{json}");
    let stopped = c.json(&["stop", &job]);
    assert_eq!(stopped[0]["state"], "stopping", "{stopped}");

    let done = c.run_detached(&[IMAGE, "true"]);
    c.wait_state(&done, "exited");
    refused(
        &c.berth(&["update", "--memory", "64m", &done]),
        "only a queued or running job",
    );
}

#[test]
fn a_restart_policy_is_enforced_across_an_agent_restart() {
    let mut c = Cluster::start();
    let node = c.add_agent(1);
    let job = c.run_detached(&["--restart", "always", IMAGE, "sleep", "300"]);
    let first = c.wait_state(&job, "running")["container_id"]
        .as_str()
        .unwrap()
        .to_string();
    // The container dies while its agent is down: the agent that comes
    // back finds it exited, and the policy starts a new attempt.
    c.kill_agent(&node);
    let kill = Command::new("docker")
        .args(["kill", &first])
        .output()
        .unwrap();
    assert!(
        kill.status.success(),
        "{}",
        String::from_utf8_lossy(&kill.stderr)
    );
    c.start_agent(&node, 1);
    let again = wait_for("the job running again", DEADLINE, || {
        let j = c.job(&job);
        (j["state"] == "running" && j["container_id"] != first.as_str()).then_some(j)
    });
    assert_eq!(again["restarts"], 1, "{again}");
    // The first attempt's container is not running: gone, or about to be
    // (an earlier attempt's container is removed once the next is placed).
    wait_for("the first attempt's container removed", DEADLINE, || {
        docker_inspect_opt(&first).is_none().then_some(())
    });
}

#[test]
fn logs_follow_a_job_through_its_restarts() {
    let mut c = Cluster::start();
    c.add_agent(1);
    let job = c.run_detached(&[
        "--restart",
        "on-failure:2",
        IMAGE,
        "sh",
        "-c",
        "echo run; sleep 2; exit 1",
    ]);
    let out = c.berth(&["logs", "-f", &job]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "run\nrun\nrun\n",
        "the three attempts' output, then the end"
    );
    let done = c.job(&job);
    assert_eq!(
        (done["state"].as_str(), done["restarts"].as_u64()),
        (Some("exited"), Some(2))
    );
}
