//! The gRPC API from outside Rust: the Python example in
//! `deploy/examples/python/` generates its stubs from `proto/` alone, checks
//! the standard health service, lists the services by server reflection,
//! submits a job and waits for its exit code.

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
    let out = Command::new("python3")
        .arg(script)
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
        "grpc.health.v1.Health",
    ] {
        assert!(services.contains(&s), "{s} by reflection: {services:?}");
    }
    assert_eq!(summary["nodes"][0], node.as_str());
    assert_eq!(summary["state"], "JOB_STATE_EXITED");
}
