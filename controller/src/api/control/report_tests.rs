use super::*;
use crate::state::{GpuInventory, GpuRef, JobSpec, NodeRecord, Placement};
use berth_proto::internal::v1::AllocationFailure;

/// A state with job "a" placed on node "n" at index 4.
fn placed() -> State {
    let mut s = State::default();
    s.apply(
        1,
        &Command::RegisterNode(NodeRecord {
            name: "n".into(),
            agent_addr: "x".into(),
            gpu_backend: crate::state::GpuBackend::Simulated,
            gpus: vec![GpuInventory {
                index: 0,
                uuid: "g0".into(),
                model: "m".into(),
                memory_total_bytes: 1,
                ..Default::default()
            }],
            docker_version: String::new(),
            ..Default::default()
        }),
    )
    .unwrap();
    s.apply(
        3,
        &Command::Submit {
            id: "a".into(),
            name: "a".into(),
            spec: JobSpec {
                gpus: 1,
                ..Default::default()
            }
            .into(),
            at_ms: 0,
            request_id: String::new(),
        },
    )
    .unwrap();
    s.apply(
        4,
        &Command::Place {
            placements: vec![Placement {
                job_id: "a".into(),
                node: "n".into(),
                gpus: vec![GpuRef {
                    index: 0,
                    uuid: "g0".into(),
                }],
                ..Default::default()
            }],
            preemptions: Vec::new(),
        },
    )
    .unwrap();
    s
}

fn report(rev: u64, containers: Vec<ContainerStatus>) -> NodeReport {
    NodeReport {
        node: "n".into(),
        observed_revision: rev,
        containers,
        ..Default::default()
    }
}

fn container(state: &str, code: i32) -> ContainerStatus {
    ContainerStatus {
        job_id: "a".into(),
        container_id: "c1".into(),
        state: ContainerState::from_docker(state) as i32,
        exit_code: code,
        started_at_ms: 10,
        finished_at_ms: 20,
        attempt: 0,
    }
}

#[test]
fn running_then_exited() {
    let mut s = placed();
    let cmds = transitions(&s, &report(4, vec![container("running", 0)]), 99);
    assert_eq!(
        cmds,
        vec![Command::Started {
            job_id: "a".into(),
            container_id: "c1".into(),
            at_ms: 10
        }]
    );
    s.apply(5, &cmds[0]).unwrap();
    assert!(
        transitions(&s, &report(5, vec![container("running", 0)]), 99).is_empty(),
        "no change, no command"
    );
    let cmds = transitions(&s, &report(5, vec![container("exited", 3)]), 99);
    assert_eq!(
        cmds,
        vec![Command::Exited {
            job_id: "a".into(),
            exit_code: 3,
            at_ms: 20
        }]
    );
}

#[test]
fn a_container_that_ran_and_exited_between_reports_is_started_then_exited() {
    let s = placed();
    let cmds = transitions(&s, &report(4, vec![container("exited", 0)]), 99);
    assert_eq!(cmds.len(), 2);
    assert!(matches!(cmds[0], Command::Started { .. }));
    assert!(matches!(cmds[1], Command::Exited { exit_code: 0, .. }));
}

#[test]
fn missing_container_counts_only_after_the_agent_saw_the_placement() {
    let s = placed();
    assert!(
        transitions(&s, &report(3, vec![]), 99).is_empty(),
        "agent has not reconciled index 4 yet"
    );
    let cmds = transitions(&s, &report(4, vec![]), 99);
    assert!(
        matches!(&cmds[0], Command::Failed { message, .. } if message.contains("no container"))
    );
}

#[test]
fn create_failures_fail_the_job_with_dockers_message() {
    let s = placed();
    let mut r = report(4, vec![]);
    r.failures.push(AllocationFailure {
        job_id: "a".into(),
        message: "port is already allocated".into(),
    });
    let cmds = transitions(&s, &r, 99);
    assert!(
        matches!(&cmds[0], Command::Failed { message, .. } if message.contains("port is already allocated"))
    );
}

#[test]
fn reports_from_other_nodes_change_nothing() {
    let s = placed();
    let mut r = report(4, vec![]);
    r.node = "other".into();
    assert!(transitions(&s, &r, 99).is_empty());
}

#[test]
fn a_failed_start_wins_over_a_created_container() {
    let s = placed();
    let mut r = report(4, vec![container("created", 0)]);
    r.failures.push(AllocationFailure {
        job_id: "a".into(),
        message: "port is already allocated".into(),
    });
    let cmds = transitions(&s, &r, 99);
    assert_eq!(cmds.len(), 1, "{cmds:?}");
    assert!(
        matches!(&cmds[0], Command::Failed { message, .. } if message.contains("port is already allocated"))
    );
}

#[test]
fn a_job_whose_image_is_arriving_is_pulling_not_failed() {
    let mut s = placed();
    let pull = |error: &str| ImagePull {
        image: "img:1".into(),
        job_ids: vec!["a".into()],
        error: error.into(),
        ..Default::default()
    };
    let mut r = report(4, vec![]);
    r.pulls = vec![pull("")];
    let cmds = transitions(&s, &r, 99);
    assert_eq!(cmds, vec![Command::Pulling { job_id: "a".into() }]);
    s.apply(5, &cmds[0]).unwrap();
    assert_eq!(s.jobs["a"].state, JobState::Pulling);
    // Still arriving: nothing to say; then the container starts.
    r.observed_revision = 5;
    assert!(transitions(&s, &r, 99).is_empty());
    let cmds = transitions(&s, &report(5, vec![container("running", 0)]), 99);
    assert!(matches!(cmds[..], [Command::Started { .. }]), "{cmds:?}");
    s.apply(6, &cmds[0]).unwrap();
    assert_eq!(s.jobs["a"].state, JobState::Running);

    // A pull that failed on every holder fails its jobs with the reason.
    let mut s = placed();
    let mut r = report(4, vec![]);
    r.pulls = vec![pull("could not load img:1 from any holder")];
    r.failures = vec![AllocationFailure {
        job_id: "a".into(),
        message: "image img:1 could not be received: could not load img:1 from any holder".into(),
    }];
    let cmds = transitions(&s, &r, 99);
    assert!(
        matches!(&cmds[..], [Command::Failed { message, .. }] if message.contains("could not be received")),
        "{cmds:?}"
    );
    s.apply(5, &cmds[0]).unwrap();
}

#[test]
fn a_fenced_job_fails_with_the_agents_reason_not_its_exit_code() {
    let s = placed();
    let mut r = report(4, vec![container("exited", 143)]);
    r.failures.push(AllocationFailure {
        job_id: "a".into(),
        message: "fenced: its host lost the controllers for 15 s".into(),
    });
    let cmds = transitions(&s, &r, 99);
    assert_eq!(cmds.len(), 1, "{cmds:?}");
    assert!(
        matches!(&cmds[0], Command::Failed { message, .. } if message.starts_with("fenced:")),
        "{cmds:?}"
    );
    // While it still runs (the stop is under way), nothing is decided.
    let mut r = report(4, vec![container("running", 0)]);
    r.failures.push(AllocationFailure {
        job_id: "a".into(),
        message: "fenced".into(),
    });
    assert!(!transitions(&s, &r, 99)
        .iter()
        .any(|c| matches!(c, Command::Failed { .. } | Command::Exited { .. })),);
}
