//! The state machine's side of the scheduling policy: whatever a plan says,
//! slices fit their GPU, gangs go whole onto distinct hosts, quotas and
//! array caps hold, exclusive hosts stay exclusive, preempted jobs requeue.

use super::{ArrayRange, GpuRef, JobSpec, JobState, RestartPolicy};

use super::*;

const G: u64 = 1 << 30;

fn cluster() -> State {
    let mut s = State::default();
    s.apply(
        1,
        &Command::Init {
            cluster_id: "c".into(),
        },
    )
    .unwrap();
    for (i, n) in ["n1", "n2"].iter().enumerate() {
        s.apply(
            2 + i as u64,
            &Command::RegisterNode(NodeRecord {
                name: n.to_string(),
                agent_addr: format!("10.0.0.{}:7451", i + 1),
                gpus: (0..2)
                    .map(|g| GpuInventory {
                        index: g,
                        uuid: format!("{n}-{g}"),
                        model: "NVIDIA A100".into(),
                        memory_total_bytes: 40 * G,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
        )
        .unwrap();
    }
    s
}

fn submit(s: &mut State, index: u64, id: &str, spec: JobSpec) -> Applied {
    s.apply(
        index,
        &Command::Submit {
            id: id.into(),
            name: id.into(),
            spec: JobSpec {
                image: "img".into(),
                ..spec
            }
            .into(),
            at_ms: 0,
            request_id: String::new(),
        },
    )
    .unwrap()
}

fn at(job: &str, node: &str, gpus: &[u32]) -> Placement {
    Placement {
        job_id: job.into(),
        node: node.into(),
        gpus: gpus
            .iter()
            .map(|g| GpuRef {
                index: *g,
                uuid: format!("{node}-{g}"),
            })
            .collect(),
        ..Default::default()
    }
}

fn place(
    s: &mut State,
    index: u64,
    placements: Vec<Placement>,
    preemptions: Vec<String>,
) -> Applied {
    s.apply(
        index,
        &Command::Place {
            placements,
            preemptions,
        },
    )
    .unwrap()
}

fn exit(s: &mut State, index: u64, job: &str, code: i32) {
    s.apply(
        index,
        &Command::Exited {
            job_id: job.into(),
            exit_code: code,
            at_ms: 1,
        },
    )
    .unwrap();
}

#[test]
fn slices_share_a_gpu_while_their_memory_fits_and_block_whole_jobs() {
    let mut s = cluster();
    let slice = |gb| JobSpec {
        gpu_memory_bytes: gb * G,
        ..Default::default()
    };
    submit(&mut s, 10, "a", slice(20));
    submit(&mut s, 11, "b", slice(20));
    submit(&mut s, 12, "c", slice(10));
    submit(
        &mut s,
        13,
        "w",
        JobSpec {
            gpus: 1,
            ..Default::default()
        },
    );
    let r = place(
        &mut s,
        14,
        vec![
            at("a", "n1", &[0]),
            at("b", "n1", &[0]),
            at("c", "n1", &[0]),
            at("w", "n1", &[0]),
        ],
        vec![],
    );
    assert_eq!(r.jobs, vec!["a", "b"], "a and b fill the 40G GPU");
    assert_eq!(r.rejected.len(), 2, "{:?}", r.rejected);
    assert_eq!(s.gpu_slices("n1-0").unwrap().values().sum::<u64>(), 40 * G);
    exit(&mut s, 15, "a", 0);
    exit(&mut s, 16, "b", 0);
    assert!(s.gpu_slices("n1-0").is_none());
    assert_eq!(
        place(&mut s, 17, vec![at("w", "n1", &[0])], vec![]).jobs,
        vec!["w"]
    );
}

#[test]
fn a_gang_is_placed_whole_on_distinct_hosts_and_torn_down_together() {
    let mut s = cluster();
    let applied = submit(
        &mut s,
        10,
        "g",
        JobSpec {
            gpus: 1,
            nodes: 2,
            ..Default::default()
        },
    );
    assert_eq!(applied.jobs, vec!["g.0", "g.1"]);
    assert_eq!(s.groups["g"].kind, GroupKind::Gang);
    // Half a gang, or two tasks on one host: refused, nothing held.
    assert!(place(&mut s, 11, vec![at("g.0", "n1", &[0])], vec![])
        .jobs
        .is_empty());
    assert!(place(
        &mut s,
        12,
        vec![at("g.0", "n1", &[0]), at("g.1", "n1", &[1])],
        vec![]
    )
    .jobs
    .is_empty());
    assert!(s.gpu_holder("n1-0").is_none());
    let r = place(
        &mut s,
        13,
        vec![at("g.0", "n1", &[0]), at("g.1", "n2", &[0])],
        vec![],
    );
    assert_eq!(r.jobs, vec!["g.0", "g.1"]);
    let env = &s.jobs["g.1"].task_env;
    for want in [
        "MASTER_ADDR=10.0.0.1",
        "MASTER_PORT=29500",
        "WORLD_SIZE=2",
        "NODE_RANK=1",
        "RANK=1",
    ] {
        assert!(
            env.contains(&want.to_string()),
            "{want} missing from {env:?}"
        );
    }
    // One task fails: the other is stopped.
    exit(&mut s, 14, "g.0", 3);
    assert_eq!(s.jobs["g.1"].state, JobState::Stopping);
    assert!(s.jobs["g.1"].message.contains("torn down"));
}

#[test]
fn a_preempted_job_is_requeued_with_its_age_and_frees_its_gpus() {
    let mut s = cluster();
    submit(
        &mut s,
        10,
        "low",
        JobSpec {
            gpus: 2,
            preemptible: true,
            ..Default::default()
        },
    );
    submit(
        &mut s,
        11,
        "firm",
        JobSpec {
            gpus: 2,
            ..Default::default()
        },
    );
    place(
        &mut s,
        12,
        vec![at("low", "n1", &[0, 1]), at("firm", "n2", &[0, 1])],
        vec![],
    );
    submit(
        &mut s,
        13,
        "high",
        JobSpec {
            gpus: 2,
            priority: 5,
            ..Default::default()
        },
    );
    let r = place(&mut s, 14, vec![], vec!["low".into(), "firm".into()]);
    assert_eq!(
        r.jobs,
        vec!["low"],
        "a non-preemptible job is never stopped"
    );
    assert_eq!(s.jobs["low"].state, JobState::Stopping);
    exit(&mut s, 15, "low", 137);
    let low = &s.jobs["low"];
    assert_eq!(
        (low.state, low.preemptions, low.seq),
        (JobState::Queued, 1, 10)
    );
    assert!(low.gpus.is_empty() && s.queue.contains(&"low".to_string()));
    assert_eq!(
        place(&mut s, 16, vec![at("high", "n1", &[0, 1])], vec![]).jobs,
        vec!["high"]
    );
    // A user's stop of a job being preempted cancels it instead of requeueing.
    submit(
        &mut s,
        17,
        "p",
        JobSpec {
            preemptible: true,
            gpus: 1,
            ..Default::default()
        },
    );
    s.apply(
        18,
        &Command::Exited {
            job_id: "high".into(),
            exit_code: 0,
            at_ms: 1,
        },
    )
    .unwrap();
    place(&mut s, 19, vec![at("p", "n1", &[0])], vec![]);
    place(&mut s, 20, vec![], vec!["p".into()]);
    s.apply(
        21,
        &Command::Cancel {
            job_id: "p".into(),
            at_ms: 2,
        },
    )
    .unwrap();
    exit(&mut s, 22, "p", 137);
    assert_eq!(s.jobs["p"].state, JobState::Cancelled);
}

#[test]
fn quotas_array_caps_and_exclusive_hosts_are_rechecked() {
    let mut s = cluster();
    s.apply(
        10,
        &Command::SetQuota {
            user: "alice".into(),
            gpus: Some(1),
            cpus_memory: None,
        },
    )
    .unwrap();
    submit(
        &mut s,
        11,
        "big",
        JobSpec {
            gpus: 2,
            user: "alice".into(),
            ..Default::default()
        },
    );
    assert!(place(&mut s, 12, vec![at("big", "n1", &[0, 1])], vec![])
        .jobs
        .is_empty());

    let arr = ArrayRange {
        start: 3,
        end: 5,
        max_running: 1,
    };
    let applied = submit(
        &mut s,
        13,
        "arr",
        JobSpec {
            gpus: 1,
            array: Some(arr),
            ..Default::default()
        },
    );
    assert_eq!(applied.jobs, vec!["arr.3", "arr.4", "arr.5"]);
    assert!(s.jobs["arr.4"]
        .task_env
        .contains(&"BERTH_ARRAY_INDEX=4".to_string()));
    let r = place(
        &mut s,
        14,
        vec![at("arr.3", "n1", &[0]), at("arr.4", "n1", &[1])],
        vec![],
    );
    assert_eq!(r.jobs, vec!["arr.3"], "the cap of 1 holds within one plan");

    submit(
        &mut s,
        15,
        "excl",
        JobSpec {
            gpus: 1,
            exclusive: true,
            ..Default::default()
        },
    );
    submit(
        &mut s,
        16,
        "next",
        JobSpec {
            gpus: 1,
            ..Default::default()
        },
    );
    assert!(
        place(&mut s, 17, vec![at("excl", "n1", &[1])], vec![])
            .jobs
            .is_empty(),
        "n1 is busy"
    );
    assert_eq!(
        place(&mut s, 18, vec![at("excl", "n2", &[0])], vec![]).jobs,
        vec!["excl"]
    );
    assert!(
        place(&mut s, 19, vec![at("next", "n2", &[1])], vec![])
            .jobs
            .is_empty(),
        "n2 is held whole"
    );
    // Indexes survive a snapshot round trip.
    let mut copy: State = serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
    copy.reindex();
    assert_eq!(copy.exclusive_holder("n2"), Some("excl"));
    assert_eq!(copy.group_live("arr"), 1);
}

#[test]
fn restart_policies_start_a_job_again_as_a_new_attempt_after_a_backoff() {
    use super::restart_backoff_ms;
    // The policy as the CLI spells it, parsed as the API's edge does.
    let restarts_again = |policy: &str, code, restarts| {
        RestartPolicy::parse(policy)
            .unwrap()
            .restarts_again(code, restarts)
    };
    assert!(restarts_again("always", Some(0), 99));
    assert!(restarts_again("unless-stopped", Some(0), 0));
    assert!(restarts_again("on-failure", Some(1), 50));
    assert!(!restarts_again("on-failure", Some(0), 0));
    assert!(restarts_again("on-failure:2", Some(1), 1));
    assert!(!restarts_again("on-failure:2", Some(1), 2));
    assert!(
        restarts_again("on-failure", None, 0),
        "a vanished container is a failure"
    );
    assert!(!restarts_again("", Some(1), 0) && !restarts_again("no", Some(1), 0));
    assert_eq!(
        (1..=8).map(restart_backoff_ms).collect::<Vec<_>>(),
        vec![1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]
    );
}

#[test]
fn an_on_failure_job_runs_again_until_its_limit_then_finishes() {
    let mut s = cluster();
    let spec = JobSpec {
        gpus: 1,
        restart: RestartPolicy::parse("on-failure:1").unwrap(),
        ..JobSpec::default()
    };
    submit(&mut s, 10, "r", spec);
    place(&mut s, 11, vec![at("r", "n1", &[0])], vec![]);
    exit(&mut s, 12, "r", 1);
    let j = &s.jobs["r"];
    assert_eq!(j.state, JobState::Queued, "{}", j.message);
    assert_eq!((j.restarts, j.attempt(), j.not_before_ms), (1, 1, 1 + 1000));
    assert!(j.gpus.is_empty() && s.queue.contains(&"r".to_string()));
    assert!(j.message.contains("exited with code 1"), "{}", j.message);
    // The second failure is past its limit: it finishes.
    place(&mut s, 13, vec![at("r", "n1", &[0])], vec![]);
    exit(&mut s, 14, "r", 1);
    assert_eq!(s.jobs["r"].state, JobState::Exited);
    // A user's stop is never followed by a restart, whatever the policy.
    let always = JobSpec {
        gpus: 1,
        restart: RestartPolicy::Always,
        ..JobSpec::default()
    };
    submit(&mut s, 20, "w", always);
    place(&mut s, 21, vec![at("w", "n1", &[1])], vec![]);
    s.apply(
        22,
        &Command::Cancel {
            job_id: "w".into(),
            at_ms: 5,
        },
    )
    .unwrap();
    exit(&mut s, 23, "w", 143);
    assert_eq!(s.jobs["w"].state, JobState::Cancelled);
}

#[test]
fn finished_jobs_are_forgotten_after_retention_and_groups_only_whole() {
    let mut s = cluster();
    s.apply(
        10,
        &Command::Submit {
            id: "solo".into(),
            name: "solo".into(),
            spec: JobSpec {
                image: "img".into(),
                gpus: 1,
                ..Default::default()
            }
            .into(),
            at_ms: 0,
            request_id: "req-1".into(),
        },
    )
    .unwrap();
    place(&mut s, 11, vec![at("solo", "n1", &[0])], vec![]);
    exit(&mut s, 12, "solo", 0);
    let arr = ArrayRange {
        start: 0,
        end: 1,
        max_running: 0,
    };
    let array = JobSpec {
        gpus: 1,
        array: Some(arr),
        ..Default::default()
    };
    submit(&mut s, 13, "arr", array);
    place(&mut s, 14, vec![at("arr.0", "n1", &[0])], vec![]);
    exit(&mut s, 15, "arr.0", 0);
    submit(&mut s, 16, "live", JobSpec::default());

    // Nothing finished before 1 ms: nothing goes.
    s.apply(17, &Command::Forget { before_ms: 1 }).unwrap();
    assert_eq!(s.jobs.len(), 4);
    s.apply(18, &Command::Forget { before_ms: 100 }).unwrap();
    assert!(!s.jobs.contains_key("solo") && s.job_for_request("req-1").is_none());
    assert!(
        s.jobs.contains_key("arr.0"),
        "its array still has a queued task"
    );
    assert!(s.jobs.contains_key("live") && s.jobs.contains_key("arr.1"));

    s.apply(
        19,
        &Command::Cancel {
            job_id: "arr.1".into(),
            at_ms: 50,
        },
    )
    .unwrap();
    s.apply(20, &Command::Forget { before_ms: 100 }).unwrap();
    assert!(!s.jobs.contains_key("arr.0") && !s.jobs.contains_key("arr.1"));
    assert!(!s.groups.contains_key("arr"), "the whole array went");
    assert_eq!(s.jobs.keys().collect::<Vec<_>>(), ["live"]);
}
