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
