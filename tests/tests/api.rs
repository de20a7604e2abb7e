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
        .env("BERTH_CA", c.tls.join("ca.pem"))
        .env("BERTH_TOKEN", &c.admin_token)
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

/// Every refusal carries a `google.rpc.ErrorInfo` whose reason a program can
/// match without parsing the message: a follower names the leader, a job no
/// host fits, one over its user's quota, an unknown job.
#[test]
fn errors_carry_a_reason_programs_can_match() {
    use berth_proto::v1::job_service_client::JobServiceClient;
    use berth_proto::v1::{GetJobRequest, JobSpec, SetQuotaRequest, SubmitJobRequest};
    use tonic_types::StatusExt;

    let mut c = Cluster::start_replicated(3);
    c.add_agent(2);
    let leader = c.leader();
    let follower = (leader + 1) % 3;
    let (leader_addr, follower_addr) = (
        c.controllers[leader].addr.clone(),
        c.controllers[follower].addr.clone(),
    );
    let alice_token = c.token("alice", "user");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dial = c.dial();
        let client = |addr: String| {
            let dial = dial.clone();
            async move {
                let ch = dial.endpoint(&addr).unwrap().connect().await.unwrap();
                JobServiceClient::with_interceptor(ch, dial.bearer.clone())
            }
        };
        let submit = |gpus: u32, user: &str| SubmitJobRequest {
            spec: Some(JobSpec {
                image: IMAGE.into(),
                gpus,
                user: user.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let reason = |s: &tonic::Status| {
            let info = s
                .get_details_error_info()
                .expect("ErrorInfo in the details");
            assert_eq!(info.domain, "berth.v1");
            (info.reason, info.metadata)
        };

        let e = client(follower_addr)
            .await
            .submit_job(submit(1, "alice"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable);
        let (r, meta) = reason(&e);
        assert_eq!(r, "NOT_LEADER");
        assert_eq!(meta["leader"], leader_addr);

        let mut jobs = client(leader_addr.clone()).await;
        let e = jobs.submit_job(submit(9, "alice")).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        assert_eq!(reason(&e).0, "NO_HOST_FITS", "{}", e.message());

        jobs.set_quota(SetQuotaRequest {
            user: "alice".into(),
            gpus: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
        // The quota counts who the token says: alice, whatever the spec's
        // user field claims.
        let ch = dial
            .endpoint(&leader_addr)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let alice = berth_proto::connect::Bearer::new(Some(&alice_token)).unwrap();
        let mut as_alice = JobServiceClient::with_interceptor(ch, alice);
        let e = as_alice.submit_job(submit(2, "admin")).await.unwrap_err();
        assert_eq!(reason(&e).0, "QUOTA_EXCEEDED", "{}", e.message());
        assert!(
            e.message().contains("alice's quota is 1"),
            "{}",
            e.message()
        );

        let e = jobs
            .get_job(GetJobRequest {
                job: "no-such-job".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        assert_eq!(reason(&e).0, "JOB_NOT_FOUND");
    });
}
