//! `berth dev`: one process with a controller and an agent on the local
//! Docker daemon, which is what a new user starts with.

use std::process::{Command, Stdio};

use berth_tests::*;

#[test]
fn dev_mode_runs_a_gpu_job_and_keeps_state_across_restarts() {
    ensure_image();
    let dir = tempfile::tempdir().unwrap();
    let node = unique("dev");
    let start = || {
        let _ = std::fs::remove_file(dir.path().join("controller.addr"));
        let log = std::fs::File::create(dir.path().join(format!("{}.log", unique("dev")))).unwrap();
        let child = Command::new(bin("berth"))
            .env("BERTH_CONFIG", dir.path().join("config.toml"))
            .args([
                "dev",
                "--listen",
                "127.0.0.1:0",
                "--fake-gpus",
                "2:A100-SXM4-80GB:80G",
                "--name",
                &node,
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let addr = wait_for("berth dev address", DEADLINE, || {
            std::fs::read_to_string(dir.path().join("controller.addr")).ok()
        });
        (child, addr)
    };
    let berth = |addr: &str, args: &[&str]| {
        Command::new(bin("berth"))
            .env("BERTH_CONFIG", dir.path().join("config.toml"))
            .args(["--addr", addr])
            .args(args)
            .output()
            .unwrap()
    };

    let (mut dev, addr) = start();
    wait_for("dev node ready", DEADLINE, || {
        let out = berth(&addr, &["nodes", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (v[0]["status"] == "ready").then_some(())
    });
    let out = berth(&addr, &["nodes"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("A100-SXM4-80GB") && table.contains(&node),
        "{table}"
    );

    let name = unique("devjob");
    let out = berth(
        &addr,
        &[
            "run",
            "--gpus",
            "2",
            "--name",
            &name,
            IMAGE,
            "berth-demo-train",
            "1",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("epoch 1/1") && stdout.contains("host GPU indexes: 0,1"),
        "{stdout}"
    );

    // One port serves the controller's and the agent's metrics.
    let metrics = std::fs::read_to_string(dir.path().join("metrics.addr")).unwrap();
    let token = std::fs::read_to_string(dir.path().join("tls/admin.token")).unwrap();
    let m = scrape_metrics(
        &metrics,
        "localhost",
        &dir.path().join("tls/ca.pem"),
        Some(token.trim()),
    );
    assert_eq!(m["status"], 200, "{m}");
    assert_eq!(
        metric_family(&m, "berth_raft_is_leader", "gauge")[0]["value"],
        1.0
    );
    let actions = metric_family(&m, "berth_agent_reconcile_actions", "counter");
    assert!(
        metric_sample(
            actions,
            "berth_agent_reconcile_actions_total",
            &[("action", "create")]
        )
        .is_some(),
        "{actions:?}"
    );

    // The job is still there after a restart of the whole dev process.
    let _ = dev.kill();
    let _ = dev.wait();
    let (mut dev, addr) = start();
    let out = berth(&addr, &["inspect", &name]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["state"], "exited");
    assert_eq!(v[0]["exit_code"], 0);
    let _ = dev.kill();
    let _ = dev.wait();
    let ids = docker_containers(&node);
    let _ = Command::new("docker")
        .args(["rm", "-f"])
        .args(&ids)
        .output();
}

/// A `berth dev` process, killed (and its node's containers removed) on
/// drop, also when an assertion fails first: it holds the tmpfs busy.
struct Dev(std::process::Child, String);

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        remove_node_containers(&self.1);
    }
}

/// A tmpfs mounted for one test, unmounted on drop.
struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_stops_the_controller_saying_so_and_it_restarts_with_every_acknowledged_job() {
    ensure_image();
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("disk");
    std::fs::create_dir(&mnt).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=48m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(ok.success(), "mounting a tmpfs (the tests run as root)");
    let _disk = Tmpfs(mnt.clone());
    let data = mnt.join("dev");
    let node = unique("full");
    let config = dir.path().join("config.toml");
    let start = |log: &str| {
        let _ = std::fs::remove_file(data.join("controller.addr"));
        let child = Command::new(bin("berth"))
            .env("BERTH_CONFIG", &config)
            .args(["dev", "--listen", "127.0.0.1:0", "--name", &node])
            .arg("--data-dir")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join(log)).unwrap())
            .spawn()
            .unwrap();
        let dev = Dev(child, node.clone());
        let addr = wait_for("berth dev address", DEADLINE, || {
            std::fs::read_to_string(data.join("controller.addr")).ok()
        });
        (dev, addr)
    };
    let (mut dev, addr) = start("first.log");
    wait_for("the dev node ready", DEADLINE, || {
        let out = Command::new(bin("berth"))
            .env("BERTH_CONFIG", &config)
            .args(["--addr", &addr, "nodes", "-o", "json"])
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (v[0]["status"] == "ready").then_some(())
    });
    // Fill the disk but 3 MiB, then submit until the controller stops.
    let df = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(&mnt)
        .output()
        .unwrap();
    let left: u64 = String::from_utf8_lossy(&df.stdout)
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("df's answer");
    let fill = Command::new("fallocate")
        .args(["-l", &(left - (3 << 20)).to_string()])
        .arg(mnt.join("filler"))
        .status()
        .unwrap();
    assert!(fill.success());
    let pad = format!("PAD={}", "x".repeat(60_000));
    let mut acknowledged = Vec::new();
    let mut failed = Vec::new();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(180);
    // Submit until the controller stops; a submit may fail before that
    // (a slow proposal on a loaded machine) without ending the test.
    let status = loop {
        if let Some(status) = dev.0.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > until {
            let log = std::fs::read_to_string(dir.path().join("first.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "the controller did not stop; {} acknowledged, failures {failed:?}; its log ends:\n{}",
                acknowledged.len(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        let name = format!("{node}-{}", acknowledged.len() + failed.len());
        let out = Command::new(bin("berth"))
            .env("BERTH_CONFIG", &config)
            .args([
                "--addr", &addr, "run", "-d", "-e", &pad, "--name", &name, IMAGE, "true",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        if out.status.success() {
            acknowledged.push(name);
        } else {
            failed.push(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
    };
    assert_eq!(status.code(), Some(70), "it stops with its own exit code");
    let log = std::fs::read_to_string(dir.path().join("first.log")).unwrap();
    assert!(
        log.contains("the disk under --data-dir is full") && log.contains("free space there"),
        "{log}"
    );
    assert!(!acknowledged.is_empty());
    // Space freed: it starts again cleanly, with every acknowledged job.
    std::fs::remove_file(mnt.join("filler")).unwrap();
    let (_dev, addr) = start("second.log");
    let names: Vec<String> = wait_for("the jobs listed again", DEADLINE, || {
        let out = Command::new(bin("berth"))
            .env("BERTH_CONFIG", &config)
            .args(["--addr", &addr, "ps", "-a", "-o", "json"])
            .output()
            .ok()?;
        job_fields(&out.stdout, "name")
    });
    for name in &acknowledged {
        assert!(names.contains(name), "acknowledged job {name} lost");
    }
    eprintln!(
        "full disk: {} submissions acknowledged before the controller stopped; all {} back after a restart ({} jobs listed)",
        acknowledged.len(),
        acknowledged.len(),
        names.len()
    );
}
