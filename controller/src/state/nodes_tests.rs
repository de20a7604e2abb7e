//! Cordon, drain, removal and lost hosts, through `apply` as the log does.

use super::*;

fn node(name: &str) -> Command {
    Command::RegisterNode(NodeRecord {
        name: name.into(),
        agent_addr: "a".into(),
        gpu_backend: GpuBackend::Simulated,
        gpus: vec![GpuInventory {
            index: 0,
            uuid: format!("{name}-g0"),
            model: "m".into(),
            memory_total_bytes: 1,
            ..Default::default()
        }],
        ..Default::default()
    })
}

fn submit(id: &str, restart: RestartPolicy, lost: OnHostLost) -> Command {
    Command::Submit {
        id: id.into(),
        name: id.into(),
        spec: JobSpec {
            image: "i".into(),
            gpus: 1,
            restart,
            on_host_lost: lost,
            ..Default::default()
        }
        .into(),
        at_ms: 0,
        request_id: String::new(),
    }
}

fn place(id: &str, node: &str) -> Command {
    Command::Place {
        placements: vec![Placement {
            job_id: id.into(),
            node: node.into(),
            gpus: vec![GpuRef {
                index: 0,
                uuid: format!("{node}-g0"),
            }],
            ..Default::default()
        }],
        preemptions: Vec::new(),
    }
}

/// Nodes a and b; job j running on a.
fn running(restart: RestartPolicy, lost: OnHostLost) -> State {
    let mut s = State::default();
    s.apply(1, &node("a")).unwrap();
    s.apply(2, &node("b")).unwrap();
    s.apply(3, &submit("j", restart, lost)).unwrap();
    s.apply(4, &place("j", "a")).unwrap();
    s.apply(
        5,
        &Command::Started {
            job_id: "j".into(),
            container_id: "c".into(),
            at_ms: 5,
        },
    )
    .unwrap();
    s
}

#[test]
fn a_cordoned_host_takes_no_placement_until_uncordoned() {
    let mut s = State::default();
    s.apply(1, &node("a")).unwrap();
    s.apply(2, &submit("j", RestartPolicy::No, OnHostLost::Auto))
        .unwrap();
    let cordon = Command::Cordon {
        node: "a".into(),
        drain_deadline_ms: None,
        at_ms: 2,
    };
    s.apply(3, &cordon).unwrap();
    let refused = s.apply(4, &place("j", "a")).unwrap();
    assert!(
        matches!(&refused.rejected[..], [Rejection::BadPlacement { why, .. }] if why.contains("cordoned")),
        "{refused:?}"
    );
    s.apply(5, &Command::Uncordon { node: "a".into() }).unwrap();
    assert_eq!(s.apply(6, &place("j", "a")).unwrap().jobs, vec!["j"]);
    assert!(matches!(
        s.apply(
            7,
            &Command::Uncordon {
                node: "nope".into()
            }
        ),
        Err(Rejection::NoSuchNode(_))
    ));
}

#[test]
fn a_drain_requeues_restartable_jobs_and_stops_the_others_at_its_deadline() {
    let mut s = running(RestartPolicy::Always, OnHostLost::Auto);
    s.apply(6, &submit("k", RestartPolicy::No, OnHostLost::Auto))
        .unwrap();
    s.apply(7, &place("k", "b")).unwrap();
    let drain = |node: &str, at: i64| Command::Cordon {
        node: node.into(),
        drain_deadline_ms: Some(at),
        at_ms: 0,
    };
    s.apply(8, &drain("a", 100)).unwrap();
    s.apply(9, &drain("b", 100)).unwrap();
    // A later, longer drain never extends the deadline.
    s.apply(10, &drain("a", 500)).unwrap();
    assert_eq!(s.cordons["a"].drain_deadline_ms, Some(100));
    assert!(s.due_evictions(99).is_empty());
    let mut due = s.due_evictions(100);
    due.sort();
    assert_eq!(
        due,
        vec![("j".into(), "a".into()), ("k".into(), "b".into())]
    );
    s.apply(
        11,
        &Command::Evict {
            job_ids: vec!["j".into(), "k".into()],
            reason: "its host a was drained".into(),
        },
    )
    .unwrap();
    assert!(
        s.due_evictions(100).is_empty(),
        "stopping jobs are not evicted twice"
    );
    for id in ["j", "k"] {
        s.apply(
            if id == "j" { 12 } else { 13 },
            &Command::Exited {
                job_id: id.into(),
                exit_code: 143,
                at_ms: 20,
            },
        )
        .unwrap();
    }
    let (j, k) = (&s.jobs["j"], &s.jobs["k"]);
    assert_eq!(j.state, JobState::Queued, "restartable: placed elsewhere");
    assert!(j.message.contains("drained"), "{}", j.message);
    assert_eq!(j.attempt(), 1, "a new attempt, with a container of its own");
    assert_eq!(k.state, JobState::Cancelled);
    assert!(k.message.contains("drained"), "{}", k.message);
}

#[test]
fn a_lost_host_fails_restarts_or_keeps_jobs_as_they_asked() {
    let lost = Command::Lost {
        job_id: "j".into(),
        message: "its host a stopped reporting".into(),
        at_ms: 50,
    };
    // Auto without a restart policy: fails.
    let mut s = running(RestartPolicy::No, OnHostLost::Auto);
    s.apply(6, &lost).unwrap();
    assert_eq!(s.jobs["j"].state, JobState::Failed);
    // Auto with one: a new attempt.
    let mut s = running(RestartPolicy::OnFailure { max: None }, OnHostLost::Auto);
    s.apply(6, &lost).unwrap();
    assert_eq!(s.jobs["j"].state, JobState::Queued);
    // `restart` without a policy still restarts; `fail` with one fails.
    let mut s = running(RestartPolicy::No, OnHostLost::Restart);
    s.apply(6, &lost).unwrap();
    assert_eq!(s.jobs["j"].state, JobState::Queued);
    let mut s = running(RestartPolicy::Always, OnHostLost::Fail);
    s.apply(6, &lost).unwrap();
    assert_eq!(s.jobs["j"].state, JobState::Failed);
    // `wait`: kept, holding its GPU, refused as lost.
    let mut s = running(RestartPolicy::Always, OnHostLost::Wait);
    assert!(s.apply(6, &lost).is_err());
    assert_eq!(s.jobs["j"].state, JobState::Running);
}

#[test]
fn removing_a_host_fails_its_jobs_and_forgets_it() {
    let mut s = running(RestartPolicy::Always, OnHostLost::Auto);
    let applied = s
        .apply(
            6,
            &Command::RemoveNode {
                node: "a".into(),
                at_ms: 60,
            },
        )
        .unwrap();
    assert_eq!(applied.jobs, vec!["j"]);
    assert!(!s.nodes.contains_key("a"));
    assert_eq!(s.live_jobs_on("a"), 0);
    assert_eq!(
        s.jobs["j"].state,
        JobState::Queued,
        "its restart policy places it elsewhere"
    );
    assert!(
        s.jobs["j"].message.contains("removed"),
        "{}",
        s.jobs["j"].message
    );
    s.reindex();
    assert_eq!(s.live_jobs_on("a"), 0, "the indexes agree after a snapshot");
}
