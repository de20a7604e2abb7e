use super::*;

fn state_with_node(gpus: u32) -> State {
    let mut s = State::default();
    s.apply(
        1,
        &Command::Init {
            cluster_id: "c".into(),
        },
    )
    .unwrap();
    s.apply(
        2,
        &Command::RegisterNode(NodeRecord {
            name: "n".into(),
            agent_addr: "a".into(),
            gpu_backend: crate::state::GpuBackend::Simulated,
            gpus: (0..gpus)
                .map(|i| GpuInventory {
                    index: i,
                    uuid: format!("g{i}"),
                    model: "m".into(),
                    memory_total_bytes: 1,
                    ..Default::default()
                })
                .collect(),
            docker_version: String::new(),
            ..Default::default()
        }),
    )
    .unwrap();
    s
}

fn submit(s: &mut State, index: u64, id: &str, gpus: u32) -> Result<Applied, Rejection> {
    s.apply(
        index,
        &Command::Submit {
            id: id.into(),
            name: format!("name-{id}"),
            spec: JobSpec {
                image: "i".into(),
                gpus,
                ..Default::default()
            }
            .into(),
            at_ms: index as i64,
            request_id: String::new(),
        },
    )
}

fn place(id: &str, gpus: &[u32]) -> Command {
    Command::Place {
        placements: vec![Placement {
            job_id: id.into(),
            node: "n".into(),
            gpus: gpus
                .iter()
                .map(|i| GpuRef {
                    index: *i,
                    uuid: format!("g{i}"),
                })
                .collect(),
            ..Default::default()
        }],
        preemptions: Vec::new(),
    }
}

#[test]
fn a_gpu_is_never_given_to_two_live_jobs() {
    let mut s = state_with_node(2);
    submit(&mut s, 3, "a", 1).unwrap();
    submit(&mut s, 4, "b", 1).unwrap();
    assert_eq!(s.apply(5, &place("a", &[0])).unwrap().jobs, vec!["a"]);
    let second = s.apply(6, &place("b", &[0])).unwrap();
    assert!(second.jobs.is_empty(), "stale plan must be refused");
    assert!(
        matches!(&second.rejected[0], Rejection::BadPlacement { why, .. } if why.contains("held by live job a"))
    );
    assert_eq!(s.jobs["b"].state, JobState::Queued);
    // Once a finishes, its GPU is free again.
    s.apply(
        7,
        &Command::Started {
            job_id: "a".into(),
            container_id: "c".into(),
            at_ms: 7,
        },
    )
    .unwrap();
    s.apply(
        8,
        &Command::Exited {
            job_id: "a".into(),
            exit_code: 0,
            at_ms: 8,
        },
    )
    .unwrap();
    assert_eq!(s.apply(9, &place("b", &[0])).unwrap().jobs, vec!["b"]);
}

#[test]
fn placement_rechecks_count_and_inventory() {
    let mut s = state_with_node(2);
    submit(&mut s, 3, "a", 2).unwrap();
    assert!(
        !s.apply(4, &place("a", &[0])).unwrap().rejected.is_empty(),
        "wrong count"
    );
    assert!(
        !s.apply(5, &place("a", &[0, 7]))
            .unwrap()
            .rejected
            .is_empty(),
        "unknown GPU"
    );
    assert!(
        !s.apply(6, &place("a", &[1, 1]))
            .unwrap()
            .rejected
            .is_empty(),
        "same GPU twice"
    );
    assert_eq!(s.apply(7, &place("a", &[0, 1])).unwrap().jobs, vec!["a"]);
    assert!(s.queue.is_empty());
}

#[test]
fn names_are_unique_among_live_jobs_only() {
    let mut s = state_with_node(1);
    let cmd = |id: &str| Command::Submit {
        id: id.into(),
        name: "train".into(),
        spec: JobSpec {
            image: "i".into(),
            ..Default::default()
        }
        .into(),
        at_ms: 0,
        request_id: String::new(),
    };
    s.apply(3, &cmd("a")).unwrap();
    assert!(matches!(
        s.apply(4, &cmd("b")),
        Err(Rejection::NameInUse(..))
    ));
    s.apply(
        5,
        &Command::Cancel {
            job_id: "a".into(),
            at_ms: 5,
        },
    )
    .unwrap();
    assert_eq!(s.jobs["a"].state, JobState::Cancelled);
    s.apply(6, &cmd("b")).unwrap();
    assert_eq!(s.live_job_named("train"), Some("b"));
}

#[test]
fn stopping_holds_gpus_until_the_container_is_gone() {
    let mut s = state_with_node(1);
    submit(&mut s, 3, "a", 1).unwrap();
    s.apply(4, &place("a", &[0])).unwrap();
    s.apply(
        5,
        &Command::Started {
            job_id: "a".into(),
            container_id: "c".into(),
            at_ms: 5,
        },
    )
    .unwrap();
    s.apply(
        6,
        &Command::Cancel {
            job_id: "a".into(),
            at_ms: 6,
        },
    )
    .unwrap();
    assert_eq!(s.jobs["a"].state, JobState::Stopping);
    assert_eq!(s.jobs["a"].stop_index, 6);
    assert_eq!(
        s.gpu_holder("g0"),
        Some("a"),
        "still held while the container may run"
    );
    let on_node: Vec<&str> = s.jobs_on("n").map(|j| j.id.as_str()).collect();
    assert_eq!(on_node, vec!["a"]);
    s.apply(
        7,
        &Command::Exited {
            job_id: "a".into(),
            exit_code: 143,
            at_ms: 7,
        },
    )
    .unwrap();
    assert_eq!(s.jobs["a"].state, JobState::Cancelled);
    assert_eq!(s.jobs["a"].exit_code, Some(143));
    assert_eq!(s.gpu_holder("g0"), None);
    assert_eq!(
        s.jobs_on("n").count(),
        0,
        "the agent no longer has to run it"
    );
    assert!(
        s.apply(
            8,
            &Command::Cancel {
                job_id: "a".into(),
                at_ms: 8
            }
        )
        .is_err(),
        "finished jobs cannot stop"
    );
}

#[test]
fn snapshot_roundtrip_rebuilds_indexes() {
    let mut s = state_with_node(2);
    submit(&mut s, 3, "a", 1).unwrap();
    s.apply(4, &place("a", &[1])).unwrap();
    let mut back: State = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    back.reindex();
    assert_eq!(back.gpu_holder("g1"), Some("a"));
    assert_eq!(back.live_job_named("name-a"), Some("a"));
}

#[test]
fn a_retried_submit_with_the_same_request_id_creates_one_job() {
    let mut s = state_with_node(1);
    let cmd = |id: &str| Command::Submit {
        id: id.into(),
        name: format!("n-{id}"),
        spec: JobSpec {
            image: "i".into(),
            ..Default::default()
        }
        .into(),
        at_ms: 0,
        request_id: "req-1".into(),
    };
    assert_eq!(s.apply(3, &cmd("a")).unwrap().jobs, vec!["a"]);
    // The retry carries a new id (generated again by the client's new attempt).
    assert_eq!(
        s.apply(4, &cmd("b")).unwrap().jobs,
        vec!["a"],
        "answered with the first job"
    );
    assert_eq!(s.jobs.len(), 1);
    assert_eq!(s.queue.len(), 1);
    let back: State = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(
        back.job_for_request("req-1"),
        Some("a"),
        "request ids survive snapshots"
    );
}

#[test]
fn host_ports_are_indexed_per_node_while_held() {
    let mut s = state_with_node(2);
    let spec = JobSpec {
        image: "i".into(),
        ports: vec![PortMapping {
            host_port: 8080,
            container_port: 80,
            ..Default::default()
        }],
        ..Default::default()
    };
    let submit = |id: &str| Command::Submit {
        id: id.into(),
        name: id.into(),
        spec: spec.clone().into(),
        at_ms: 0,
        request_id: String::new(),
    };
    s.apply(3, &submit("a")).unwrap();
    s.apply(4, &submit("b")).unwrap();
    s.apply(5, &place("a", &[])).unwrap();
    assert_eq!(
        s.host_port_holder("n", 8080, "TCP"),
        Some("a"),
        "empty and TCP mean tcp"
    );
    assert_eq!(
        s.ports_on("n").collect::<Vec<_>>(),
        vec![(8080, "tcp".to_string())]
    );
    let clash = s.apply(6, &place("b", &[])).unwrap();
    assert!(
        clash.jobs.is_empty(),
        "the same host port twice on one node is refused"
    );
    s.apply(
        7,
        &Command::Cancel {
            job_id: "a".into(),
            at_ms: 7,
        },
    )
    .unwrap();
    s.apply(
        8,
        &Command::Exited {
            job_id: "a".into(),
            exit_code: 0,
            at_ms: 8,
        },
    )
    .unwrap();
    assert_eq!(s.ports_on("n").count(), 0);
    assert_eq!(s.apply(9, &place("b", &[])).unwrap().jobs, vec!["b"]);
    let mut back: State = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    back.reindex();
    assert_eq!(
        back.host_port_holder("n", 8080, ""),
        Some("b"),
        "rebuilt from a snapshot"
    );
}

#[test]
fn gpu_jobs_on_lists_gpu_holders_once_and_live_jobs_counts_all() {
    let mut s = state_with_node(2);
    submit(&mut s, 3, "two", 2).unwrap();
    s.apply(4, &place("two", &[0, 1])).unwrap();
    for (i, id) in ["cpu1", "cpu2", "cpu3"].iter().enumerate() {
        submit(&mut s, 5 + 2 * i as u64, id, 0).unwrap();
        s.apply(6 + 2 * i as u64, &place(id, &[])).unwrap();
    }
    let node = s.nodes["n"].clone();
    let ids: Vec<&str> = s.gpu_jobs_on(&node).map(|j| j.id.as_str()).collect();
    assert_eq!(ids, ["two"]);
    assert_eq!(s.live_jobs_on("n"), 4);
}

#[test]
fn update_changes_live_jobs_only_and_zero_leaves_a_value() {
    let mut s = state_with_node(1);
    submit(&mut s, 3, "a", 1).unwrap();
    // As the API's edge parses it: empty leaves the policy.
    let update = |memory_bytes, nano_cpus, restart: &str| Command::Update {
        job_id: "a".into(),
        memory_bytes,
        nano_cpus,
        restart: (!restart.is_empty()).then(|| RestartPolicy::parse(restart).unwrap()),
    };
    s.apply(4, &update(1 << 30, 2_000_000_000, "always"))
        .unwrap();
    s.apply(5, &update(0, 0, "")).unwrap();
    let spec = &s.jobs["a"].spec;
    assert_eq!(
        (
            spec.memory_bytes,
            spec.nano_cpus,
            spec.restart.as_spec().as_str()
        ),
        (1 << 30, 2_000_000_000, "always")
    );
    s.apply(
        6,
        &Command::Cancel {
            job_id: "a".into(),
            at_ms: 6,
        },
    )
    .unwrap();
    assert!(matches!(
        s.apply(7, &update(2 << 30, 0, "")),
        Err(Rejection::BadTransition(..))
    ));
    assert_eq!(
        s.jobs["a"].spec.memory_bytes,
        1 << 30,
        "a refusal changes nothing"
    );
}
