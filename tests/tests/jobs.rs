//! Jobs end to end: real controller and agent processes, the real Docker
//! daemon, the real CLI. GPUs are simulated (no GPU on CI).

use berth_tests::*;
use serde_json::Value;

/// Three 1-GPU jobs on a 2-GPU host: two run on distinct GPUs, the third
/// queues and takes the GPU the first one frees. Exit codes and logs come back.
#[test]
fn third_job_queues_until_a_gpu_frees() {
    let mut c = Cluster::start();
    let node = c.add_agent(2);
    let gates = Gates::new();
    let m = gates.mount();
    let names: Vec<String> = (1..=3).map(|i| unique(&format!("q{i}"))).collect();
    let cmds: Vec<Vec<String>> = names
        .iter()
        .enumerate()
        .map(|(i, n)| Gates::job_cmd(n, 10 + i as i32))
        .collect();
    let ids: Vec<String> = (0..3)
        .map(|i| {
            c.run_detached(&args(
                &["--gpus", "1", "-v", &m, "--name", &names[i], IMAGE],
                &cmds[i],
            ))
        })
        .collect();

    let j1 = c.wait_state(&ids[0], "running");
    let j2 = c.wait_state(&ids[1], "running");
    let j3 = c.job(&ids[2]);
    assert_eq!(j3["state"], "queued", "only two GPUs: {j3}");
    assert_eq!(j3["queue_position"], 1);

    // Distinct GPUs, as the containers themselves see them.
    let env = |j: &Value| {
        container_env(
            &docker_inspect(j["container_id"].as_str().unwrap()),
            "CUDA_VISIBLE_DEVICES",
        )
        .unwrap()
    };
    let (g1, g2) = (env(&j1), env(&j2));
    assert!(
        g1.starts_with("GPU-") && g2.starts_with("GPU-"),
        "{g1} {g2}"
    );
    assert_ne!(g1, g2, "two live jobs on one GPU");
    assert_eq!(j1["node"], node.as_str());

    // `berth nodes` shows who holds what.
    let nodes = c.json(&["nodes"]);
    let held: Vec<&str> = nodes[0]["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["job_id"].as_str().unwrap())
        .collect();
    assert!(
        held.contains(&ids[0].as_str()) && held.contains(&ids[1].as_str()),
        "{held:?}"
    );

    // The first job finishes: its exit code and logs come back, and the
    // queued job starts on the GPU it freed.
    gates.open(&names[0]);
    let wait = c.berth(&["wait", &ids[0]]);
    assert_eq!(
        wait.status.code(),
        Some(10),
        "berth wait exits with the job's code"
    );
    assert_eq!(String::from_utf8_lossy(&wait.stdout).trim(), "10");
    let logs = c.berth(&["logs", &names[0]]);
    assert!(String::from_utf8_lossy(&logs.stdout).contains(&format!("hello-{}", names[0])));
    assert!(
        String::from_utf8_lossy(&logs.stderr).contains(&format!("bye-{}", names[0])),
        "stderr stays stderr"
    );
    let j3 = c.wait_state(&ids[2], "running");
    assert_eq!(env(&j3), g1, "the queued job takes the freed GPU");

    gates.open(&names[1]);
    gates.open(&names[2]);
    assert_eq!(c.wait_state(&ids[1], "exited")["exit_code"], 11);
    assert_eq!(c.wait_state(&ids[2], "exited")["exit_code"], 12);
    let ps = c.json(&["ps", "-a"]);
    assert_eq!(ps.as_array().unwrap().len(), 3);
    assert!(
        c.json(&["ps"]).as_array().unwrap().is_empty(),
        "ps without -a hides finished jobs"
    );
}

/// `berth run` attached behaves like `docker run`: output streams through,
/// and the container's exit code is ours.
#[test]
fn attached_run_streams_output_and_returns_exit_code() {
    let mut c = Cluster::start();
    c.add_agent(1);
    let out = c.berth(&[
        "run",
        "--gpus",
        "1",
        IMAGE,
        "sh",
        "-c",
        "echo to-stdout; echo to-stderr >&2; exit 3",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "to-stdout\n",
        "stdout carries only the container's output"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("to-stderr"), "{err}");
    assert!(err.contains("placed on"), "placement is shown: {err}");
}

/// What `docker inspect` shows of a Berth container: binds, ports, shm, env,
/// name and labels, all as asked.
#[test]
fn docker_inspect_shows_what_was_asked() {
    let mut c = Cluster::start();
    let node = c.add_agent(2);
    let data = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let name = unique("insp");
    let bind = format!("{}:/data:ro", data.path().display());
    let publish = format!("127.0.0.1:{port}:8080");
    let id = c.run_detached(&[
        "--gpus",
        "2",
        "-v",
        &bind,
        "-p",
        &publish,
        "--shm-size",
        "256m",
        "-e",
        "FOO=bar",
        "--name",
        &name,
        IMAGE,
        "sh",
        "-c",
        "trap 'exit 0' TERM; while :; do sleep 0.05; done",
    ]);
    let job = c.wait_state(&id, "running");
    let i = docker_inspect(job["container_id"].as_str().unwrap());
    assert_eq!(i["Name"], format!("/{name}"));
    // A structured bind mount, never a "SRC:DST" string.
    let m = &i["HostConfig"]["Mounts"][0];
    assert_eq!(m["Type"], "bind");
    assert_eq!(m["Source"], data.path().display().to_string());
    assert_eq!(m["Target"], "/data");
    assert_eq!(m["ReadOnly"], true);
    let pb = &i["HostConfig"]["PortBindings"]["8080/tcp"][0];
    assert_eq!(pb["HostPort"], port.to_string());
    assert_eq!(pb["HostIp"], "127.0.0.1");
    assert_eq!(i["HostConfig"]["ShmSize"], 256 << 20);
    assert_eq!(container_env(&i, "FOO").as_deref(), Some("bar"));
    let uuids = container_env(&i, "NVIDIA_VISIBLE_DEVICES").unwrap();
    assert_eq!(uuids.split(',').count(), 2);
    assert_eq!(container_env(&i, "CUDA_VISIBLE_DEVICES").unwrap(), uuids);
    let labels = &i["Config"]["Labels"];
    assert_eq!(labels["berth.job"], id.as_str());
    assert_eq!(labels["berth.node"], node.as_str());
    assert_eq!(labels["berth.job-name"], name.as_str());
    assert_eq!(labels["berth.gpus"], uuids.as_str());
    // Simulated GPUs: env only, no NVIDIA device request (there is no device).
    assert!(
        i["HostConfig"]["DeviceRequests"].is_null()
            || i["HostConfig"]["DeviceRequests"]
                .as_array()
                .unwrap()
                .is_empty()
    );

    // Stop: the job ends cancelled, and its GPUs are free again.
    let stop = c.berth(&["stop", &name]);
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
    c.wait_state(&id, "cancelled");
    let nodes = c.json(&["nodes"]);
    assert!(
        nodes[0]["gpus"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["job_id"] == ""),
        "{nodes}"
    );
}

/// Bad input is refused with a message that says what to do, and nothing is
/// created: no job, no container.
#[test]
fn bad_input_is_refused_and_creates_nothing() {
    let mut c = Cluster::start();
    let node = c.add_agent(2);
    let refused = |args: &[&str], needle: &str| {
        let out = c.berth(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{args:?} should fail: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in {err:?}"
        );
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "no stack traces: {err}"
        );
    };
    refused(
        &["run", "--gpus", "3", IMAGE, "true"],
        &format!("the largest host ({node}) has 2"),
    );
    refused(&["run", "no-such-image:1", "true"], "exists on no host");
    refused(
        &["run", "-v", "relative:/data", IMAGE, "true"],
        "must be absolute",
    );
    refused(&["run", "-v", "/a", IMAGE, "true"], "expected SRC:DST");
    refused(
        &["run", "-p", "1:2:3:80", IMAGE, "true"],
        "expected [HOST:]CONTAINER",
    );
    refused(&["run", "-p", "99999:80", IMAGE, "true"], "out of range");
    refused(&["run", "--shm-size", "lots", IMAGE, "true"], "--shm-size");
    refused(&["run", "--shm-size", "1q", IMAGE, "true"], "unknown unit");
    refused(
        &["run", "--name", "bad name", IMAGE, "true"],
        "invalid name",
    );
    refused(&["logs", "no-such-job"], "no job");
    assert!(
        c.json(&["ps", "-a"]).as_array().unwrap().is_empty(),
        "a refused job leaves no trace"
    );
    assert!(
        docker_containers(&node).is_empty(),
        "nothing was created in Docker"
    );
}

/// A GPU with a process Berth did not start is "foreign": shown as such and
/// never given to a job, until the process goes away.
#[test]
fn foreign_gpu_is_not_given_to_jobs() {
    let mut c = Cluster::start();
    let node = c.add_agent(2);
    std::fs::write(c.foreign_file(&node), "0 4242 jupyter 2G\n").unwrap();
    wait_for("GPU 0 foreign", DEADLINE, || {
        let n = c.json(&["nodes"]);
        (n[0]["gpus"][0]["foreign"] == true).then_some(())
    });
    let table = String::from_utf8(c.berth(&["nodes"]).stdout).unwrap();
    assert!(table.contains("foreign (jupyter pid 4242)"), "{table}");

    let gates = Gates::new();
    let m = gates.mount();
    let (a, b) = (unique("fa"), unique("fb"));
    let (ca, cb) = (Gates::job_cmd(&a, 0), Gates::job_cmd(&b, 0));
    let ja = c.run_detached(&args(&["--gpus", "1", "-v", &m, "--name", &a, IMAGE], &ca));
    let job = c.wait_state(&ja, "running");
    assert_eq!(job["gpus"][0]["index"], 1, "the foreign GPU 0 is skipped");
    let jb = c.run_detached(&args(&["--gpus", "1", "-v", &m, "--name", &b, IMAGE], &cb));
    std::thread::sleep(std::time::Duration::from_millis(1500)); // several scheduling passes
    assert_eq!(
        c.job(&jb)["state"],
        "queued",
        "GPU 0 is busy with a foreign process"
    );

    std::fs::write(c.foreign_file(&node), "").unwrap();
    let job = c.wait_state(&jb, "running");
    assert_eq!(job["gpus"][0]["index"], 0);
    gates.open(&a);
    gates.open(&b);
    c.wait_state(&ja, "exited");
    c.wait_state(&jb, "exited");
}

/// A job whose container cannot start (its host port is taken outside Berth)
/// fails with Docker's reason, and an attached run says so; its GPU is freed.
#[test]
fn a_job_that_cannot_start_fails_with_the_reason() {
    let mut c = Cluster::start();
    c.add_agent(1);
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let publish = format!("127.0.0.1:{port}:80");
    let name = unique("portclash");
    let out = c.berth(&[
        "run", "--gpus", "1", "-p", &publish, "--name", &name, IMAGE, "true",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{err}");
    assert!(
        err.contains("failed") && err.contains("could not start"),
        "{err}"
    );
    let job = c.job(&name);
    assert_eq!(job["state"], "failed");
    let nodes = c.json(&["nodes"]);
    assert_eq!(
        nodes[0]["gpus"][0]["job_id"], "",
        "the failed job's GPU is free again"
    );
    drop(busy);
}

#[test]
fn finished_jobs_are_forgotten_after_the_retention() {
    let mut c = Cluster::start_with(1, &["--job-retention", "2s"]);
    c.add_agent(1);
    let done = c.run_detached(&[IMAGE, "true"]);
    c.wait_state(&done, "exited");
    let live = c.run_detached(&[IMAGE, "sleep", "300"]);
    c.wait_state(&live, "running");
    wait_for("the finished job forgotten", DEADLINE, || {
        let out = c.berth(&["inspect", &done]);
        (!out.status.success()).then_some(())
    });
    let ids: Vec<String> = c
        .json(&["ps", "-a"])
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, [live], "the running job stays, however old");
}
