//! Three real controller processes replicating over raft on loopback, with
//! real agents and Docker: failover and full restarts lose nothing.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_proto::v1::job_service_client::JobServiceClient;
use berth_proto::v1::{JobSpec, SubmitJobRequest};
use berth_tests::*;
use serde_json::Value;

const FOREVER: &str = "trap 'exit 0' TERM; while :; do sleep 0.1; done";

/// Submits jobs `0..n` with request ids from `workers` concurrent clients,
/// retrying each (same request id) until acknowledged. Returns index → job id.
fn submit_all(
    dial: berth_proto::connect::Dial,
    addrs: String,
    n: usize,
    workers: usize,
    acked: Arc<AtomicUsize>,
) -> HashMap<usize, String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let next = Arc::new(AtomicUsize::new(0));
        let out = Arc::new(Mutex::new(HashMap::new()));
        let list: Vec<String> = addrs.split(',').map(String::from).collect();
        let mut tasks = Vec::new();
        for _ in 0..workers {
            let (next, out, list, acked) = (next.clone(), out.clone(), list.clone(), acked.clone());
            let dial = dial.clone();
            tasks.push(tokio::spawn(async move {
                let mut client: Option<JobServiceClient<berth_proto::connect::Authed>> = None;
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= n {
                        return;
                    }
                    let deadline = Instant::now() + Duration::from_secs(60);
                    loop {
                        assert!(Instant::now() < deadline, "submit {i} never acknowledged");
                        if client.is_none() {
                            if let Ok((ch, _)) =
                                berth_proto::connect::leader(&dial, &list, Duration::from_secs(10))
                                    .await
                            {
                                client = Some(JobServiceClient::new(berth_proto::connect::authed(
                                    ch,
                                    dial.bearer.clone(),
                                )));
                            }
                        }
                        let Some(c) = client.as_mut() else {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        };
                        let req = SubmitJobRequest {
                            spec: Some(JobSpec {
                                image: IMAGE.into(),
                                command: vec!["sh".into(), "-c".into(), FOREVER.into()],
                                gpus: 1,
                                ..Default::default()
                            }),
                            name: format!("sub-{i}"),
                            request_id: format!("req-{i}"),
                            dry_run: false,
                        };
                        match c.submit_job(req).await {
                            Ok(r) => {
                                let id = r.into_inner().job.unwrap().id;
                                out.lock().unwrap().insert(i, id);
                                acked.fetch_add(1, Ordering::SeqCst);
                                break;
                            }
                            Err(_) => {
                                // Failover (or a timeout): find the leader again, same request id.
                                client = None;
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        Arc::try_unwrap(out).unwrap().into_inner().unwrap()
    })
}

fn live(job: &Value) -> bool {
    matches!(
        job["state"].as_str(),
        Some("placed" | "running" | "stopping")
    )
}

#[test]
fn kill9_leader_during_1000_submits_loses_and_duplicates_nothing() {
    let mut c = Cluster::start_replicated(3);
    c.add_agent(2);
    let first_leader = c.leader();
    let acked = Arc::new(AtomicUsize::new(0));
    let submitter = {
        let (dial, addrs, acked) = (c.dial(), c.addr.clone(), acked.clone());
        std::thread::spawn(move || submit_all(dial, addrs, 1000, 16, acked))
    };
    wait_for("300 acknowledged submits", Duration::from_secs(120), || {
        (acked.load(Ordering::SeqCst) >= 300).then_some(())
    });
    c.kill_controller(first_leader);
    let ids = submitter.join().expect("submitter");
    assert_eq!(ids.len(), 1000, "every submit was eventually acknowledged");
    let new_leader = c.leader();
    assert_ne!(new_leader, first_leader);

    let jobs = c.json(&["ps", "-a"]);
    let jobs = jobs.as_array().unwrap();
    let mut by_name: HashMap<&str, Vec<&Value>> = HashMap::new();
    for j in jobs {
        by_name
            .entry(j["name"].as_str().unwrap())
            .or_default()
            .push(j);
    }
    for (i, id) in &ids {
        let same = &by_name[format!("sub-{i}").as_str()];
        assert_eq!(same.len(), 1, "sub-{i} exists exactly once");
        assert_eq!(
            same[0]["id"],
            id.as_str(),
            "the acknowledged job is the one that exists"
        );
    }
    assert_eq!(jobs.len(), 1000, "no job beyond the acknowledged ones");
    let mut held = HashSet::new();
    for j in jobs.iter().filter(|j| live(j)) {
        for g in j["gpus"].as_array().unwrap() {
            assert!(
                held.insert(g["uuid"].as_str().unwrap().to_string()),
                "a GPU is held by two live jobs"
            );
        }
    }
    // The new leader takes writes, through the CLI too.
    let out = c.berth(&["run", "-d", IMAGE, "true"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn all_controllers_restart_with_the_same_state() {
    let mut c = Cluster::start_replicated(3);
    let node = c.add_agent(2);
    let ids: Vec<String> = (0..4)
        .map(|i| {
            c.run_detached(&[
                "--gpus",
                "1",
                "--name",
                &unique(&format!("rs{i}")),
                IMAGE,
                "sh",
                "-c",
                FOREVER,
            ])
        })
        .collect();
    c.wait_state(&ids[0], "running");
    c.wait_state(&ids[1], "running");
    let before = c.json(&["ps", "-a"]);

    for i in 0..3 {
        c.kill_controller(i);
    }
    for i in 0..3 {
        c.start_controller(i);
    }
    c.leader();
    let after = c.json(&["ps", "-a"]);
    let key = |v: &Value| {
        let mut rows: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|j| {
                format!(
                    "{} {} {} {} {}",
                    j["id"], j["name"], j["state"], j["node"], j["gpus"]
                )
            })
            .collect();
        rows.sort();
        rows
    };
    assert_eq!(
        key(&after),
        key(&before),
        "the same jobs, states, nodes and GPUs"
    );
    // The agent follows the new leader, and the cluster goes on: stopping a
    // running job lets a queued one take its GPU.
    c.wait_node_ready(&node);
    assert!(c.berth(&["stop", &ids[0]]).status.success());
    c.wait_state(&ids[2], "running");
    assert_eq!(
        docker_containers(&node).len(),
        3,
        "one container per started job"
    );
}

/// Cut the leader off from the other two: it cannot commit, the majority
/// elects a leader and goes on, and once the cut heals the old leader
/// catches up.
#[test]
fn a_cut_off_minority_cannot_commit_and_catches_up_after_healing() {
    let mut c = Cluster::start_replicated(3);
    c.add_agent(1);
    let old = c.leader();
    let cut_addr = c.controllers[old].addr.clone();
    let others: Vec<String> = c
        .controllers
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != old)
        .map(|(_, x)| x.addr.clone())
        .collect();
    let others = others.join(",");
    c.cut(old, true);
    let frozen_commit = wait_for("the cut controller to stop committing", DEADLINE, || {
        let m = c.members(&cut_addr);
        let me = m.iter().find(|m| m["addr"] == cut_addr.as_str())?;
        (me["role"] != "leader").then(|| me["commit"].as_u64())?
    });

    // The majority elects a new leader and takes writes.
    let ids: Vec<String> = (0..10)
        .map(|i| {
            let out = c
                .cli()
                .args([
                    "--addr",
                    &others,
                    "run",
                    "-d",
                    "--name",
                    &unique(&format!("maj{i}")),
                    IMAGE,
                    "true",
                ])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "majority write: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        })
        .collect();
    let majority_commit = c
        .members(&others)
        .iter()
        .filter_map(|m| m["commit"].as_u64())
        .max()
        .unwrap();
    let cut_now = c
        .members(&cut_addr)
        .into_iter()
        .find(|m| m["addr"] == cut_addr.as_str())
        .unwrap();
    assert_eq!(
        cut_now["commit"].as_u64(),
        Some(frozen_commit),
        "the minority committed nothing while cut"
    );
    assert!(majority_commit > frozen_commit + 10);

    // Heal: the old leader rejoins as a follower and applies everything.
    c.cut(old, false);
    wait_for("the healed controller to catch up", DEADLINE, || {
        let me = c
            .members(&cut_addr)
            .into_iter()
            .find(|m| m["addr"] == cut_addr.as_str())?;
        (me["applied"].as_u64()? >= majority_commit && me["role"] == "follower").then_some(())
    });
    for id in &ids {
        assert!(c.job(id)["id"] == id.as_str());
    }
}

/// A fourth controller joins a cluster whose log has been compacted: it is
/// added as a learner, catches up from a snapshot, and becomes a voter.
/// Then a member is removed and the cluster goes on.
#[test]
fn a_new_controller_catches_up_by_snapshot_and_a_member_can_be_removed() {
    let mut c = Cluster::start_with(3, &["--snapshot-every", "100"]);
    c.add_agent(1);
    let acked = Arc::new(AtomicUsize::new(0));
    // 1 GPU: the first job holds it, the rest queue; ~250 log entries.
    let ids = submit_all(c.dial(), c.addr.clone(), 250, 8, acked);
    assert_eq!(ids.len(), 250);
    let leader = c.leader();
    let leader_addr = c.controllers[leader].addr.clone();
    wait_for("the leader to compact its log", DEADLINE, || {
        let me = c
            .members(&leader_addr)
            .into_iter()
            .find(|m| m["addr"] == leader_addr.as_str())?;
        (me["first_index"].as_u64()? > 100).then_some(())
    });

    let new = c.join_controller(4, &["--snapshot-every", "100"]);
    let new_addr = c.controllers[new].addr.clone();
    let out = c.berth(&["controller", "add", "4", &new_addr]);
    assert!(
        out.status.success(),
        "controller add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = format!("{},{new_addr}", c.addr);
    let commit = c
        .members(&leader_addr)
        .into_iter()
        .find(|m| m["addr"] == leader_addr.as_str())
        .unwrap()["commit"]
        .as_u64()
        .unwrap();
    let me = wait_for("controller 4 to catch up as a voter", DEADLINE, || {
        let me = c.members(&all).into_iter().find(|m| m["id"] == 4)?;
        (me["suffrage"] == "voter" && me["applied"].as_u64()? >= commit).then_some(me)
    });
    assert!(
        me["first_index"].as_u64().unwrap() > 1,
        "it was caught up by a snapshot, not by replaying the log: {me}"
    );
    // Its state machine has every job: ask it once it leads... or simply check
    // that its applied index covers the commit that contained them (above).

    // Remove a follower; the remaining three go on taking writes.
    let follower = c
        .controllers
        .iter()
        .find(|x| x.id != c.controllers[leader].id && x.id != 4)
        .unwrap()
        .id;
    let out = c
        .cli()
        .args([
            "--addr",
            &all,
            "controller",
            "remove",
            &follower.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "controller remove: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let members = c.members(&all);
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(members.iter().all(|m| m["id"] != follower));
    let out = c
        .cli()
        .args(["--addr", &all, "run", "-d", IMAGE, "true"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "write after removal: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
