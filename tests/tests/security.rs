//! Who may do what, on real binaries over mutual TLS: tokens and roles,
//! ownership of jobs, the mount and privilege policy, plaintext and wrong
//! certificates refused, and the audit log.

use std::time::Duration;

use berth_proto::v1::job_service_client::JobServiceClient;
use berth_proto::v1::ListJobsRequest;
use berth_tests::*;

/// A one-message client stream.
fn futures_stream<T: Send + 'static>(item: T) -> impl tokio_stream::Stream<Item = T> + Send {
    tokio_stream::iter([item])
}

const FOREVER: &str = "trap 'exit 0' TERM; while :; do sleep 0.1; done";

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn users_act_only_on_their_own_jobs_and_roles_bound_the_rest() {
    let mut c = Cluster::start();
    let node = c.add_agent(2);
    let alice = c.token("alice", "user");
    let bob = c.token("bob", "user");
    let viewer = c.token("vic", "viewer");

    // alice's job belongs to alice, whatever --user once meant.
    let out = c.berth_as(
        &alice,
        &[
            "run",
            "-d",
            "-e",
            "SECRET=hunter2",
            IMAGE,
            "sh",
            "-c",
            FOREVER,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let job = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let j = c.wait_state(&job, "running");
    assert_eq!(j["spec"]["user"], "alice");

    // bob can do none of it, and is told which rule.
    for args in [
        vec!["stop", job.as_str()],
        vec!["logs", job.as_str()],
        vec!["exec", job.as_str(), "true"],
        vec!["cp", &format!("{job}:/etc/hostname"), "/tmp/x-never"],
        vec!["commit", job.as_str(), "stolen:1"],
        vec!["update", job.as_str(), "-m", "64m"],
    ] {
        let out = c.berth_as(&bob, &args);
        assert!(!out.status.success(), "bob {args:?} succeeded");
        assert!(
            stderr(&out).contains("jobs.owner-or-admin"),
            "bob {args:?}: {}",
            stderr(&out)
        );
    }
    assert_eq!(c.job(&job)["state"], "running", "nothing changed");
    // bob sees the job, not alice's environment.
    let listed = c.berth_as(&bob, &["inspect", &job, "-o", "json"]);
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        !text.contains("hunter2") && text.contains("SECRET=<redacted>"),
        "{text}"
    );
    // alice herself may.
    let out = c.berth_as(&alice, &["logs", &job]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = c.berth_as(&alice, &["exec", &job, "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The host's agent recorded the session, and for whom.
    let agent_audit = std::fs::read_to_string(c.dir.path().join(format!("{node}.audit"))).unwrap();
    let session: serde_json::Value =
        serde_json::from_str(agent_audit.lines().last().unwrap()).unwrap();
    assert_eq!(session["what"], "exec");
    assert_eq!(session["requested_by"], "user alice (user)");
    assert_eq!(session["job"], job.as_str());
    assert_eq!(session["outcome"], "OK");

    // A viewer reads but cannot submit.
    let out = c.berth_as(&viewer, &["ps"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = c.berth_as(&viewer, &["run", "-d", IMAGE, "true"]);
    assert!(stderr(&out).contains("needs role user"), "{}", stderr(&out));
    // Users do not change quotas or mint tokens.
    let out = c.berth_as(&alice, &["quota", "set", "alice", "99"]);
    assert!(
        stderr(&out).contains("needs role admin"),
        "{}",
        stderr(&out)
    );
    let out = c.berth_as(&alice, &["token", "create", "mallory", "--role", "admin"]);
    assert!(
        stderr(&out).contains("needs role admin"),
        "{}",
        stderr(&out)
    );

    // No token, a bad one, a revoked one: UNAUTHENTICATED, at once.
    let out = c.berth_anonymous(&["ps"]);
    assert!(stderr(&out).contains("no credentials"), "{}", stderr(&out));
    let out = c.berth_as("berth_00000000_nope", &["ps"]);
    assert!(stderr(&out).contains("malformed"), "{}", stderr(&out));
    let out = c.berth(&["token", "revoke", "bob"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = c.berth_as(&bob, &["ps"]);
    assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));

    // The admin may stop anyone's job.
    let out = c.berth(&["stop", &job]);
    assert!(out.status.success(), "{}", stderr(&out));

    // One audit line per mutating request, denials included.
    let audit = std::fs::read_to_string(c.controllers[0].dir.join("audit.log")).unwrap();
    let lines: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let denied_stop = lines.iter().any(|l| {
        l["name"] == "bob"
            && l["method"] == "/berth.v1.JobService/CancelJob"
            && l["outcome"] == "PERMISSION_DENIED"
    });
    let admin_stop = lines.iter().any(|l| {
        l["name"] == "admin"
            && l["method"] == "/berth.v1.JobService/CancelJob"
            && l["outcome"] == "OK"
    });
    let viewer_submit = lines.iter().any(|l| {
        l["name"] == "vic"
            && l["method"] == "/berth.v1.JobService/SubmitJob"
            && l["outcome"] == "PERMISSION_DENIED"
    });
    assert!(denied_stop && admin_stop && viewer_submit, "{audit}");
    assert!(lines.iter().all(|l| l["from"]
        .as_str()
        .is_some_and(|f| f.starts_with("127.0.0.1:"))));
}

#[test]
fn the_policy_refuses_host_paths_and_privileges_and_runs_as_the_uid_asked() {
    let mut c = Cluster::start();
    c.add_agent(1);
    let alice = c.token("alice", "user");
    let bob = c.token("bob", "user");
    for (args, rule) in [
        (vec!["-v", "/:/host"], "mounts.deny"),
        (
            vec!["-v", "/var/run/docker.sock:/var/run/docker.sock"],
            "mounts.deny",
        ),
        (vec!["-v", "/etc:/x"], "mounts.deny"),
        (vec!["--privileged"], "privileges.privileged"),
        (vec!["--network", "host"], "privileges.network_host"),
    ] {
        let out = c.berth_as(
            &alice,
            &[&["run", "-d"], args.as_slice(), &[IMAGE, "true"]].concat(),
        );
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr(&out).contains(rule), "{args:?}: {}", stderr(&out));
    }
    // /home/{user}: alice's home for alice, not for bob.
    let policy = c.dir.path().join("policy.toml");
    std::fs::write(&policy, "[mounts]\nallow = [\"/home/{user}\", \"/tmp\"]\n").unwrap();
    let out = c.berth(&["policy", "set", policy.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = c.berth_as(&bob, &["run", "-d", "-v", "/home/alice:/h", IMAGE, "true"]);
    assert!(stderr(&out).contains("mounts.allow"), "{}", stderr(&out));
    let out = c.berth_as(&alice, &["run", "-v", "/home/alice:/h:ro", IMAGE, "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A user cannot lift the policy.
    let out = c.berth_as(&alice, &["policy", "set", policy.to_str().unwrap()]);
    assert!(
        stderr(&out).contains("needs role admin"),
        "{}",
        stderr(&out)
    );

    // -u means docker's -u now.
    let out = c.berth_as(&alice, &["run", "-u", "1000:1000", IMAGE, "id", "-u"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1000");
}

#[test]
fn certificates_bind_roles_and_plaintext_is_refused() {
    let mut c = Cluster::start();
    let node = c.add_agent(1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let addr = c.controllers[0].addr.clone();
    rt.block_on(async {
        // Plaintext: the TLS server does not speak it.
        let plain = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(3))
            .connect()
            .await;
        if let Ok(ch) = plain {
            let r = JobServiceClient::new(ch)
                .list_jobs(ListJobsRequest::default())
                .await;
            assert!(r.is_err(), "a plaintext call was answered");
        }

        // An agent's certificate is not a user.
        let node_dial = berth_proto::connect::Dial {
            tls: berth_proto::tls::Tls::load(&c.node_tls(&node)).unwrap(),
            bearer: Default::default(),
        };
        let ch = node_dial.endpoint(&addr).unwrap().connect().await.unwrap();
        let e = JobServiceClient::new(ch.clone())
            .list_jobs(ListJobsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");

        // A user's token cannot reach raft or the agents' control plane.
        let user = c.dial();
        let ch = user.endpoint(&addr).unwrap().connect().await.unwrap();
        let mut cp =
            berth_proto::internal::v1::control_plane_client::ControlPlaneClient::with_interceptor(
                ch,
                user.bearer.clone(),
            );
        let e = cp
            .register(berth_proto::internal::v1::RegisterRequest {
                node: "fake".into(),
                agent_addr: "127.0.0.1:1".into(),
                gpu_backend: 2,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
        assert!(e.message().contains("control.nodes-only"), "{e:?}");

        // Nor raft.
        let ch = user.endpoint(&addr).unwrap().connect().await.unwrap();
        let mut raft =
            berth_proto::internal::v1::raft_service_client::RaftServiceClient::with_interceptor(
                ch,
                user.bearer.clone(),
            );
        let chunk = berth_proto::internal::v1::RaftChunk {
            data: vec![0u8; 8],
            more: false,
        };
        let e = raft.send(futures_stream(chunk)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
        assert!(e.message().contains("raft.controllers-only"), "{e:?}");

        // The agent's own port: no client certificate, no handshake; a
        // user's certificate (even one the CA signed) is refused; another
        // node's is welcome (agents send each other images).
        let agent_addr = c.json(&["nodes"])[0]["agent_addr"]
            .as_str()
            .map(String::from);
        if let Some(agent_addr) = agent_addr {
            let ca_only = berth_proto::tls::Tls::ca_only(
                std::fs::read_to_string(c.tls.join("ca.pem")).unwrap(),
            );
            let logs = |tls: berth_proto::tls::Tls| {
                let agent_addr = agent_addr.clone();
                async move {
                    let ch = berth_proto::connect::endpoint(
                        &agent_addr,
                        &tls,
                        berth_proto::tls::NODE_DOMAIN,
                    )
                    .unwrap()
                    .connect()
                    .await
                    .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
                    berth_proto::internal::v1::agent_service_client::AgentServiceClient::new(ch)
                        .container_logs(berth_proto::internal::v1::ContainerLogsRequest {
                            container_id: "nope".into(),
                            job_id: "nope".into(),
                            follow: false,
                            tail: 0,
                        })
                        .await
                        .map(|_| ())
                }
            };
            assert!(
                logs(ca_only).await.is_err(),
                "no client certificate, no service"
            );
            let ca = berth_proto::tls::Ca::load(&c.tls).unwrap();
            let user_cert = ca
                .issue(
                    &berth_proto::tls::Peer::User {
                        name: "alice".into(),
                        role: "admin".into(),
                    },
                    &[],
                    Duration::from_secs(600),
                )
                .unwrap();
            let e = logs(user_cert).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
            assert!(e.message().contains("agent.peers-only"), "{e:?}");
            let peer = berth_proto::tls::Tls::load(&c.node_tls("peer-agent")).unwrap();
            let e = logs(peer).await.unwrap_err();
            // Admitted: the agent looked for the container and did not find it.
            assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
        } else {
            panic!("the node's agent address is not listed");
        }

        // A second agent cannot register under the first one's name.
        let other = c.node_tls("impostor");
        let impostor = berth_proto::connect::Dial {
            tls: berth_proto::tls::Tls::load(&other).unwrap(),
            bearer: Default::default(),
        };
        let ch = impostor.endpoint(&addr).unwrap().connect().await.unwrap();
        let e = berth_proto::internal::v1::control_plane_client::ControlPlaneClient::new(ch)
            .register(berth_proto::internal::v1::RegisterRequest {
                node: node.clone(),
                agent_addr: "127.0.0.1:1".into(),
                gpu_backend: 2,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(e.message().contains("control.own-name"), "{e:?}");
    });
    // The real node is untouched.
    c.wait_node_ready(&node);
}

#[test]
fn an_agent_joins_with_a_one_time_token_for_its_name_only() {
    let mut c = Cluster::start();
    let join = |c: &Cluster, name: Option<&str>| {
        let mut args = vec!["token", "create", "--join"];
        args.extend(name);
        let out = c.berth(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // A directory with only the CA: what a new host is given.
    let ca_only = |c: &Cluster, name: &str| {
        let dir = c.dir.path().join(format!("{name}-join"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(c.tls.join("ca.pem"), dir.join("ca.pem")).unwrap();
        dir
    };
    let token = join(&c, None);
    let name = unique("joined");
    let dir = ca_only(&c, &name);
    c.spawn_agent_named(
        &name,
        &["--tls-dir", dir.to_str().unwrap(), "--join-token", &token],
    );
    c.wait_node_ready(&name);
    let tls = berth_proto::tls::Tls::load(&dir).unwrap();
    assert_eq!(tls.peer(), Some(berth_proto::tls::Peer::Node(name.clone())));
    // A joined node runs jobs (the controller reaches its data plane).
    // (the only node: the job runs there.)
    let out = c.berth(&["run", IMAGE, "echo", "joined"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("joined"),
        "{}",
        stderr(&out)
    );

    // Used up: a second host cannot reuse it.
    let second = unique("second");
    let out = std::process::Command::new(bin("berth-agent"))
        .args([
            "--controllers",
            &c.addr,
            "--name",
            &second,
            "--fake-gpus",
            "1",
            "--join-token",
            &token,
        ])
        .arg("--tls-dir")
        .arg(ca_only(&c, &second))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown or was revoked"),
        "{}",
        stderr(&out)
    );

    // A token made for one name joins that name only.
    let token = join(&c, Some("alpha"));
    let out = std::process::Command::new(bin("berth-agent"))
        .args([
            "--controllers",
            &c.addr,
            "--name",
            "beta",
            "--fake-gpus",
            "1",
            "--join-token",
            &token,
        ])
        .arg("--tls-dir")
        .arg(ca_only(&c, "beta"))
        .output()
        .unwrap();
    assert!(stderr(&out).contains("join.token-node"), "{}", stderr(&out));
}

#[test]
fn a_node_renews_its_certificate_before_it_expires_and_keeps_working() {
    let mut c = Cluster::start();
    let name = unique("short");
    let dir = c.node_tls_for(&name, "6s");
    let first = berth_proto::tls::Tls::load(&dir)
        .unwrap()
        .not_after()
        .unwrap();
    c.spawn_agent_named(&name, &[]);
    c.wait_node_ready(&name);
    let renewed = wait_for("a renewed certificate", Duration::from_secs(30), || {
        let t = berth_proto::tls::Tls::load(&dir).ok()?.not_after()?;
        (t > first).then_some(t)
    });
    assert!(renewed > first);
    // Past the first certificate's end: the controller still reaches the
    // agent's data plane (logs of an attached run) and the agent reports.
    wait_for(
        "the first certificate to expire",
        Duration::from_secs(30),
        || (std::time::SystemTime::now() > first + Duration::from_secs(1)).then_some(()),
    );
    let out = c.berth(&["run", IMAGE, "echo", "still here"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("still here"),
        "{}",
        stderr(&out)
    );
    c.wait_node_ready(&name);
}

#[test]
fn a_user_cannot_flood_the_queue() {
    let mut c = Cluster::start_with(1, &["--max-queued-per-user", "2"]);
    c.add_agent(1);
    let alice = c.token("alice", "user");
    let run = |c: &Cluster| {
        c.berth_as(
            &alice,
            &["run", "-d", "--gpus", "1", IMAGE, "sh", "-c", FOREVER],
        )
    };
    let first = run(&c);
    assert!(first.status.success(), "{}", stderr(&first));
    c.wait_state(String::from_utf8_lossy(&first.stdout).trim(), "running");
    for _ in 0..2 {
        let out = run(&c);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let out = run(&c);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--max-queued-per-user"),
        "{}",
        stderr(&out)
    );
    // The cap is per user, and admins are not bound by it.
    let out = c.berth(&["run", "-d", "--gpus", "1", IMAGE, "true"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn the_agent_refuses_what_its_host_resolves_to_a_denied_path() {
    // The controller sees /tmp/…/innocent, under the default policy's /tmp;
    // on the host it is a symlink to /etc, which the agent refuses.
    let mut c = Cluster::start();
    c.add_agent(1);
    let alice = c.token("alice", "user");
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("innocent");
    std::os::unix::fs::symlink("/etc", &link).unwrap();
    let mount = format!("{}:/x:ro", link.display());
    let out = c.berth_as(
        &alice,
        &["run", "-d", "-v", &mount, IMAGE, "cat", "/x/shadow"],
    );
    assert!(
        out.status.success(),
        "the controller accepts it: {}",
        stderr(&out)
    );
    let job = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let j = c.wait_state(&job, "failed");
    let message = j["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("refused by this host's agent")
            && message.contains("mounts.deny")
            && message.contains("/etc"),
        "{j}"
    );
    assert!(
        j["container_id"].as_str().unwrap_or_default().is_empty(),
        "no container: {j}"
    );
}

#[test]
fn a_node_cannot_divert_the_controller_to_another_nodes_agent() {
    // "evil" holds a genuine node certificate, but registers the address of
    // another node's agent: the controller dials it expecting evil's
    // certificate, gets the other's, and refuses the connection.
    let mut c = Cluster::start();
    let victim = c.add_agent(1);
    let victim_addr = c
        .json(&["nodes"])
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == victim.as_str())
        .unwrap()["agent_addr"]
        .as_str()
        .unwrap()
        .to_string();
    let evil = berth_proto::connect::Dial {
        tls: berth_proto::tls::Tls::load(&c.node_tls("evil")).unwrap(),
        bearer: Default::default(),
    };
    let addr = c.controllers[0].addr.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ch = evil.endpoint(&addr).unwrap().connect().await.unwrap();
        let mut cp = berth_proto::internal::v1::control_plane_client::ControlPlaneClient::new(ch);
        cp.register(berth_proto::internal::v1::RegisterRequest {
            node: "evil".into(),
            agent_addr: victim_addr.clone(),
            gpu_backend: 2,
            ..Default::default()
        })
        .await
        .unwrap();
        cp.report(berth_proto::internal::v1::ReportRequest {
            report: Some(berth_proto::internal::v1::NodeReport {
                node: "evil".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    });
    let out = c.berth(&["image", "gc", "--on", "evil", "--dry-run"]);
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(all.contains("cannot reach the agent of evil"), "{all}");
    // The victim's own agent is still reached under its name.
    let out = c.berth(&["image", "gc", "--on", &victim, "--dry-run"]);
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(!all.contains("cannot reach"), "{all}");
}
