//! The gRPC API from outside Rust: the Python example in
//! `deploy/examples/python/` generates its stubs from a copy of
//! `proto/berth/v1` alone (no internal files), checks the standard health
//! service, lists the services by server reflection, submits a job and
//! waits for its exit code.

use std::process::Command;

use berth_tests::*;

#[test]
fn a_python_grpcio_client_works_from_the_proto_files_alone() {
    let mut c = Cluster::start();
    let node = c.add_agent(1);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/examples/python/berth_client.py"
    );
    // The public API alone: berth/v1 copied where berth/internal is not.
    let public = tempfile::tempdir().unwrap();
    let v1 = public.path().join("berth/v1");
    std::fs::create_dir_all(&v1).unwrap();
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto/berth/v1");
    for f in std::fs::read_dir(source).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, v1.join(f.file_name().unwrap())).unwrap();
    }
    let out = Command::new("python3")
        .arg(script)
        .env("BERTH_PROTO_DIR", public.path())
        .args(["--addr", &c.addr, "--image", IMAGE, "--"])
        .args(["sh", "-c", "echo hello from python; exit 3"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the job's exit code: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("hello from python"), "{stdout}");
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["health"], "SERVING");
    let services: Vec<&str> = summary["services"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    for s in [
        "berth.v1.JobService",
        "berth.v1.NodeService",
        "berth.internal.v1.ControlPlane",
        "grpc.health.v1.Health",
    ] {
        assert!(services.contains(&s), "{s} by reflection: {services:?}");
    }
    assert_eq!(summary["nodes"][0], node.as_str());
    assert_eq!(summary["state"], "JOB_STATE_EXITED");
}

#[test]
fn nodes_verbose_shows_each_daemons_settings_and_what_looks_wrong() {
    let mut c = Cluster::start();
    let full = c.add_agent_env("1", &[], &[("BERTH_FAULT_DISK_FREE", "1048576")]);
    let root = Command::new("docker")
        .args(["info", "--format", "{{.DockerRootDir}} {{.DefaultRuntime}}"])
        .output()
        .unwrap();
    let root = String::from_utf8_lossy(&root.stdout).trim().to_string();
    let (data_root, default_runtime) = root.split_once(' ').unwrap();
    let nodes = c.json(&["nodes"]);
    let d = &nodes[0]["daemon"];
    assert_eq!(d["root_dir"], data_root, "{d}");
    assert_eq!(d["default_runtime"], default_runtime, "{d}");
    assert!(d["runtimes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r == default_runtime));
    let out = c.berth(&["nodes", "--verbose"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("{full} (ready)")), "{text}");
    assert!(text.contains(&format!("data root {data_root}")), "{text}");
    assert!(text.contains("nvidia runtime: no"), "{text}");
    assert!(
        text.contains("warning: the Docker data root") && text.contains("berth image gc"),
        "{text}"
    );
}
