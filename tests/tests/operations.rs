//! Running it for months: cordon, drain and removal of hosts; finished
//! containers removed and their logs bounded; backups restored.

use std::process::Command;

use berth_tests::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn node_json(c: &Cluster, node: &str) -> serde_json::Value {
    c.json(&["nodes"])
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == node)
        .cloned()
        .unwrap_or_default()
}

#[test]
fn cordon_drain_and_remove_a_host() {
    let mut c = Cluster::start_with(1, &["--node-lost-after", "4s"]);
    let a = c.add_agent(1);
    // Only admins touch hosts.
    let alice = c.token("alice", "user");
    let out = c.berth_as(&alice, &["node", "cordon", &a]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("admin"), "{}", stderr(&out));

    // Cordoned: the job queues, and explain says why.
    let out = c.berth(&["node", "cordon", &a]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(node_json(&c, &a)["schedulable"], "cordoned");
    let job = c.run_detached(&["--gpus", "1", "--restart", "always", IMAGE, "sleep", "300"]);
    let explain = c.berth(&["explain", &job]);
    let text = String::from_utf8_lossy(&explain.stdout);
    assert!(text.contains("cordoned"), "{text}");
    assert_eq!(c.job(&job)["state"], "queued");
    // Uncordoned: it runs there.
    let out = c.berth(&["node", "uncordon", &a]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(c.wait_state(&job, "running")["node"], a.as_str());

    // Drained with room elsewhere: it ends on A and runs on B.
    let b = c.add_agent(1);
    let out = c.berth(&["node", "drain", &a, "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("drained"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let moved = wait_for("the job running on the other host", DEADLINE, || {
        let j = c.job(&job);
        (j["state"] == "running" && j["node"] == b.as_str()).then_some(j)
    });
    assert_eq!(moved["preemptions"], 1, "a new attempt: {moved}");
    let na = node_json(&c, &a);
    assert_eq!(
        (na["schedulable"].as_str(), na["live_jobs"].as_u64()),
        (Some("drained"), Some(0))
    );
    let table = String::from_utf8_lossy(&c.berth(&["nodes"]).stdout).to_string();
    assert!(table.contains("ready,drained"), "{table}");
    assert_eq!(running_containers_of(&job).len(), 1, "one copy, on B");

    // A host that is up is not forgotten; once down it is.
    let out = c.berth(&["node", "rm", &a]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("is up"), "{}", stderr(&out));
    c.kill_agent(&a);
    wait_for("A down", DEADLINE, || {
        (node_json(&c, &a)["status"] == "down").then_some(())
    });
    let out = c.berth(&["node", "rm", &a]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(node_json(&c, &a).is_null(), "A is gone from `berth nodes`");
    let out = c.berth(&["node", "cordon", &a]);
    assert!(stderr(&out).contains("no node named"), "{}", stderr(&out));
}

/// Ids of the running containers of `job` on this machine's daemon.
fn running_containers_of(job: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-q", "--filter", &format!("label=berth.job={job}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect()
}

#[test]
fn finished_containers_go_logs_are_bounded_and_gc_frees_their_image() {
    let mut c = Cluster::start();
    let d2 = Dockerd::start();
    let _src = c.add_agent(1);
    let sock = d2.socket().display().to_string();
    let dst = c.add_agent_with(
        "1",
        &[
            "--docker",
            &sock,
            "--label",
            "store=second",
            "--container-retention",
            "1s",
        ],
    );
    let out = c.berth(&["image", "push", IMAGE, "--to", &dst]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Every container has a bounded log and a pids limit.
    let long = c.run_detached(&["--constraint", "store=second", IMAGE, "sleep", "300"]);
    let cid = c.wait_state(&long, "running")["container_id"]
        .as_str()
        .unwrap()
        .to_string();
    let inspect = d2.docker(&[
        "inspect",
        "-f",
        "{{.HostConfig.LogConfig.Type}} {{index .HostConfig.LogConfig.Config \"max-size\"}} {{index .HostConfig.LogConfig.Config \"max-file\"}} {{.HostConfig.PidsLimit}}",
        &cid,
    ]);
    let text = String::from_utf8_lossy(&inspect.stdout).trim().to_string();
    assert_eq!(text, format!("json-file {} 3 32768", 100 << 20));
    c.berth(&["stop", &long]);
    // A job's own --pids-limit wins.
    let own = c.run_detached(&[
        "--constraint",
        "store=second",
        "--pids-limit",
        "64",
        IMAGE,
        "sleep",
        "300",
    ]);
    let cid = c.wait_state(&own, "running")["container_id"]
        .as_str()
        .unwrap()
        .to_string();
    let inspect = d2.docker(&["inspect", "-f", "{{.HostConfig.PidsLimit}}", &cid]);
    assert_eq!(String::from_utf8_lossy(&inspect.stdout).trim(), "64");
    c.berth(&["stop", &own]);
    // 20 finished jobs, then the retention passes: no container is left.
    let jobs: Vec<String> = (0..20)
        .map(|i| {
            c.run_detached(&[
                "--constraint",
                "store=second",
                IMAGE,
                "sh",
                "-c",
                &format!("echo {i}"),
            ])
        })
        .collect();
    for j in &jobs {
        wait_for(&format!("{j} finished"), DEADLINE, || {
            c.job(j)["state"]
                .as_str()
                .filter(|s| *s == "exited")
                .map(|_| ())
        });
    }
    wait_for("no container left on the second daemon", DEADLINE, || {
        let out = d2.docker(&["ps", "-a", "-q"]);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .is_empty()
            .then_some(())
    });
    // Logs of a finished job whose container is gone say so.
    let out = c.berth(&["logs", &jobs[0]]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("container is gone"),
        "{}",
        stderr(&out)
    );
    // And the image only removed containers used is collected.
    assert!(d2.image_id(IMAGE).is_some());
    let out = c.berth(&["image", "gc", "--on", &dst]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(d2.image_id(IMAGE), None, "GC removed it");
}

#[test]
fn a_backup_of_a_running_cluster_restores_into_a_new_data_dir() {
    let mut c = Cluster::start();
    let _a = c.add_agent(1);
    let running = c.run_detached(&["--gpus", "1", IMAGE, "sleep", "300"]);
    c.wait_state(&running, "running");
    let done: Vec<String> = (0..3)
        .map(|i| c.run_detached(&[IMAGE, "sh", "-c", &format!("exit {i}")]))
        .collect();
    for j in &done {
        wait_for("finished", DEADLINE, || {
            c.job(j)["state"]
                .as_str()
                .filter(|s| *s == "exited")
                .map(|_| ())
        });
    }
    let before = job_fields(&c.berth(&["ps", "-a", "-o", "json"]).stdout, "id").unwrap();
    assert_eq!(before.len(), 4);

    let file = c.dir.path().join("backup.berth");
    let out = Command::new(bin("berth-controller"))
        .args(["backup", "--addr", &c.addr, "--out"])
        .arg(&file)
        .arg("--tls-dir")
        .arg(&c.tls)
        .env_remove("BERTH_TOKEN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("4 job(s)"), "{}", stderr(&out));

    // Restored into a new data dir, a controller started on it has them all.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let data = c.dir.path().join("restored");
    let restore = |data: &std::path::Path| {
        Command::new(bin("berth-controller"))
            .arg("restore")
            .arg(&file)
            .arg("--data-dir")
            .arg(data)
            .args(["--id", "1", "--peers", &format!("1={addr}")])
            .output()
            .unwrap()
    };
    let out = restore(&data);
    assert!(out.status.success(), "{}", stderr(&out));
    let again = restore(&data);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already holds"),
        "{}",
        stderr(&again)
    );
    let mut cmd = Command::new(bin("berth-controller"));
    cmd.args([
        "--listen",
        &addr,
        "--id",
        "1",
        "--peers",
        &format!("1={addr}"),
    ])
    .arg("--data-dir")
    .arg(&data)
    .arg("--tls-dir")
    .arg(&c.tls)
    .args(["--image-gc-high", "100"]);
    let _restored = Proc::spawn(&mut cmd, &c.dir.path().join("restored.log"));
    let after: Vec<String> = wait_for("the restored controller answering", DEADLINE, || {
        let out = c
            .cli()
            .args(["--addr", &addr, "ps", "-a", "--output", "json"])
            .output()
            .ok()?;
        job_fields(&out.stdout, "id")
    });
    let (mut b, mut a) = (before.clone(), after);
    b.sort();
    a.sort();
    assert_eq!(a, b, "every job is back");
}

#[test]
fn logs_come_as_json_lines_with_their_fields() {
    let c = Cluster::start();
    let dir = c.dir.path().join("jsonlog");
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("controller.log");
    let mut cmd = Command::new(bin("berth-controller"));
    cmd.args(["--log-format", "json", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(&dir)
        .arg("--tls-dir")
        .arg(&c.tls);
    let _p = Proc::spawn(&mut cmd, &log);
    let addr = wait_for("the controller listening", DEADLINE, || {
        std::fs::read_to_string(dir.join("controller.addr")).ok()
    });
    // A request: its log lines carry its id, method and caller.
    let out = Command::new(bin("berth"))
        .env("BERTH_CONFIG", c.config_path())
        .args(["--addr", &addr, "token", "create", "bob"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = wait_for("its first lines", DEADLINE, || {
        let t = std::fs::read_to_string(&log).ok()?;
        (t.contains("controller listening") && t.contains("token created")).then_some(t)
    });
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}")))
        .collect();
    let listening = lines
        .iter()
        .find(|l| l["message"] == "controller listening")
        .expect("the listening line");
    assert_eq!(listening["level"], "INFO");
    assert!(
        listening["addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{listening}"
    );
    assert!(listening["timestamp"].is_string(), "{listening}");
    let created = lines
        .iter()
        .find(|l| l["message"] == "token created")
        .expect("the request's line");
    assert_eq!(created["user"], "bob", "{created}");
    let span = &created["span"];
    assert_eq!(span["name"], "request", "{created}");
    assert_eq!(
        span["method"], "/berth.v1.AccessService/CreateToken",
        "{created}"
    );
    let id = span["id"].as_str().unwrap();
    assert!(
        id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{created}"
    );
    assert!(
        span["who"].as_str().unwrap().contains("(admin)"),
        "{created}"
    );
}
