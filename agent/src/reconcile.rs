//! The reconciler's core: desired allocations + actual containers → actions.
//! Pure and level-triggered: run it any number of times, after any restart,
//! and it converges without duplicating or orphaning containers.

use std::collections::{HashMap, HashSet};

use berth_proto::internal::v1::{Allocation, ContainerState};
use berth_proto::v1::JobState;

use crate::runtime::ContainerInfo;

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// No container exists for a newly placed job.
    Create(Box<Allocation>),
    /// A placed job's image is not on this host: receive it first.
    Pull { job_id: String, image: String },
    /// A container was created but never started (the agent died in between).
    Start {
        job_id: String,
        container_id: String,
    },
    /// A live container whose limits differ from its job's (`berth update`,
    /// or a change made behind Berth's back): `docker update` it.
    Update {
        job_id: String,
        container_id: String,
        memory_bytes: u64,
        nano_cpus: u64,
    },
    /// A running container whose job is stopping, finished, or unknown.
    Stop {
        job_id: String,
        container_id: String,
    },
    /// A stopped container nobody needs any more (`cleanup`).
    Remove {
        job_id: String,
        container_id: String,
    },
}

impl Action {
    /// The action's name in metrics and logs.
    pub fn word(&self) -> &'static str {
        match self {
            Action::Create(_) => "create",
            Action::Pull { .. } => "pull",
            Action::Start { .. } => "start",
            Action::Update { .. } => "update",
            Action::Stop { .. } => "stop",
            Action::Remove { .. } => "remove",
        }
    }
}

/// The stopped containers to remove, at `now_ms`: one of an attempt that is
/// not placed here (a finished job, one forgotten, one restarted elsewhere)
/// once `retention_ms` passed since it ended — so `berth logs` and `berth
/// cp` work on a finished job until then — and at once when it never ran,
/// or when a later attempt of its job is placed here.
pub fn cleanup(
    desired: &[Allocation],
    actual: &[ContainerInfo],
    now_ms: i64,
    retention_ms: i64,
) -> Vec<Action> {
    let current: HashMap<&str, u32> = desired
        .iter()
        .map(|a| (a.job_id.as_str(), a.attempt))
        .collect();
    actual
        .iter()
        .filter(|c| !c.is_running())
        .filter(|c| match current.get(c.job_id.as_str()) {
            Some(&attempt) => c.attempt < attempt,
            None if c.state == ContainerState::Created => true,
            // `--rm`: its end is recorded (the job no longer holds this
            // host), so nothing needs it.
            None if c.auto_remove => true,
            None => c.finished_at_ms.saturating_add(retention_ms) <= now_ms,
        })
        .map(|c| Action::Remove {
            job_id: c.job_id.clone(),
            container_id: c.id.clone(),
        })
        .collect()
}

/// Running containers no allocation here wants (their job ended, moved, or
/// was never this cluster's to run): they are being stopped, and until
/// they are gone their GPUs are not free.
pub fn zombies<'a>(desired: &[Allocation], actual: &'a [ContainerInfo]) -> Vec<&'a ContainerInfo> {
    let wanted: HashSet<(&str, u32)> = desired
        .iter()
        .map(|a| (a.job_id.as_str(), a.attempt))
        .collect();
    actual
        .iter()
        .filter(|c| c.is_running() && !wanted.contains(&(c.job_id.as_str(), c.attempt)))
        .collect()
}

/// `failed`: jobs whose create already failed; they are reported, not retried.
/// `has_image`: whether the daemon holds an image reference.
pub fn plan(
    desired: &[Allocation],
    actual: &[ContainerInfo],
    failed: &HashSet<String>,
    has_image: &dyn Fn(&str) -> bool,
) -> Vec<Action> {
    // Keyed by attempt too: a requeued job's old container is not its container.
    let by_job: HashMap<(&str, u32), &ContainerInfo> = actual
        .iter()
        .map(|c| ((c.job_id.as_str(), c.attempt), c))
        .collect();
    let mut actions = Vec::new();
    for alloc in desired {
        let state = JobState::try_from(alloc.state).unwrap_or(JobState::Unspecified);
        match (state, by_job.get(&(alloc.job_id.as_str(), alloc.attempt))) {
            (JobState::Placed | JobState::Pulling, None) if !failed.contains(&alloc.job_id) => {
                let image = alloc.spec.as_ref().map_or("", |s| s.image.as_str());
                actions.push(if has_image(image) {
                    Action::Create(Box::new(alloc.clone()))
                } else {
                    Action::Pull {
                        job_id: alloc.job_id.clone(),
                        image: berth_proto::image_ref::normalize(image),
                    }
                })
            }
            (JobState::Placed | JobState::Pulling | JobState::Running, Some(c))
                if c.state == ContainerState::Created && !failed.contains(&alloc.job_id) =>
            {
                actions.push(Action::Start {
                    job_id: alloc.job_id.clone(),
                    container_id: c.id.clone(),
                })
            }
            (JobState::Placed | JobState::Pulling | JobState::Running, Some(c))
                if c.is_running() =>
            {
                // A limit the job does not set is left as the container has it.
                let spec = alloc.spec.clone().unwrap_or_default();
                let differs =
                    |want: u64, have: u64| if want != 0 && want != have { want } else { 0 };
                let memory_bytes = differs(spec.memory_bytes, c.memory_bytes);
                let nano_cpus = differs(spec.nano_cpus, c.nano_cpus);
                if memory_bytes != 0 || nano_cpus != 0 {
                    actions.push(Action::Update {
                        job_id: alloc.job_id.clone(),
                        container_id: c.id.clone(),
                        memory_bytes,
                        nano_cpus,
                    })
                }
            }
            (JobState::Stopping, Some(c)) if c.is_running() => actions.push(Action::Stop {
                job_id: alloc.job_id.clone(),
                container_id: c.id.clone(),
            }),
            // RUNNING with no container is reported, never recreated here:
            // an attempt runs once. A restart policy is the controller's
            // (a new attempt, placed again, with a container of its own).
            _ => {}
        }
    }
    let wanted: HashSet<(&str, u32)> = desired
        .iter()
        .map(|a| (a.job_id.as_str(), a.attempt))
        .collect();
    for c in actual {
        if c.is_running() && !wanted.contains(&(c.job_id.as_str(), c.attempt)) {
            actions.push(Action::Stop {
                job_id: c.job_id.clone(),
                container_id: c.id.clone(),
            });
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(job: &str, state: JobState) -> Allocation {
        Allocation {
            job_id: job.into(),
            job_name: job.into(),
            state: state as i32,
            ..Default::default()
        }
    }

    fn container(job: &str, state: &str) -> ContainerInfo {
        ContainerInfo {
            id: format!("c-{job}"),
            job_id: job.into(),
            state: ContainerState::from_docker(state),
            ..Default::default()
        }
    }

    #[test]
    fn creates_only_missing_placed_jobs() {
        let desired = [
            alloc("a", JobState::Placed),
            alloc("b", JobState::Placed),
            alloc("c", JobState::Running),
        ];
        let actual = [container("b", "running")];
        let actions = plan(&desired, &actual, &HashSet::new(), &|_| true);
        assert_eq!(actions, vec![Action::Create(Box::new(desired[0].clone()))]);
    }

    #[test]
    fn idempotent_after_restart() {
        let desired = [alloc("a", JobState::Running)];
        let actual = [container("a", "running")];
        assert!(plan(&desired, &actual, &HashSet::new(), &|_| true).is_empty());
        let exited = [container("a", "exited")];
        assert!(
            plan(&desired, &exited, &HashSet::new(), &|_| true).is_empty(),
            "never recreate a finished container"
        );
    }

    #[test]
    fn starts_created_and_stops_stopping_and_orphans() {
        let desired = [alloc("a", JobState::Placed), alloc("b", JobState::Stopping)];
        let actual = [
            container("a", "created"),
            container("b", "running"),
            container("z", "running"),
            container("y", "exited"),
        ];
        let actions = plan(&desired, &actual, &HashSet::new(), &|_| true);
        assert_eq!(
            actions,
            vec![
                Action::Start {
                    job_id: "a".into(),
                    container_id: "c-a".into()
                },
                Action::Stop {
                    job_id: "b".into(),
                    container_id: "c-b".into()
                },
                Action::Stop {
                    job_id: "z".into(),
                    container_id: "c-z".into()
                },
            ]
        );
    }

    #[test]
    fn a_requeued_job_gets_a_new_container_not_its_old_one() {
        let mut next = alloc("a", JobState::Placed);
        next.attempt = 1;
        let old = [container("a", "exited")];
        assert_eq!(
            plan(std::slice::from_ref(&next), &old, &HashSet::new(), &|_| {
                true
            }),
            vec![Action::Create(Box::new(next.clone()))]
        );
        let mut running_old = container("a", "running");
        running_old.id = "old".into();
        let actions = plan(
            std::slice::from_ref(&next),
            &[running_old],
            &HashSet::new(),
            &|_| true,
        );
        assert!(actions.contains(&Action::Stop {
            job_id: "a".into(),
            container_id: "old".into()
        }));
    }

    #[test]
    fn a_missing_image_is_pulled_before_the_container_is_created() {
        let mut a = alloc("a", JobState::Placed);
        a.spec = Some(berth_proto::v1::JobSpec {
            image: "train".into(),
            ..Default::default()
        });
        let mut b = a.clone();
        b.job_id = "b".into();
        b.state = JobState::Pulling as i32;
        let missing = |_: &str| false;
        assert_eq!(
            plan(&[a.clone(), b], &[], &HashSet::new(), &missing),
            vec![
                Action::Pull {
                    job_id: "a".into(),
                    image: "train:latest".into()
                },
                Action::Pull {
                    job_id: "b".into(),
                    image: "train:latest".into()
                }
            ]
        );
        let here = |r: &str| r == "train";
        assert_eq!(
            plan(std::slice::from_ref(&a), &[], &HashSet::new(), &here),
            vec![Action::Create(Box::new(a.clone()))]
        );
    }

    #[test]
    fn live_containers_follow_their_jobs_limits() {
        let mut a = alloc("a", JobState::Running);
        a.spec = Some(berth_proto::v1::JobSpec {
            memory_bytes: 512 << 20,
            nano_cpus: 1_500_000_000,
            ..Default::default()
        });
        let mut c = container("a", "running");
        c.memory_bytes = 256 << 20;
        c.nano_cpus = 1_500_000_000;
        assert_eq!(
            plan(
                std::slice::from_ref(&a),
                &[c.clone()],
                &HashSet::new(),
                &|_| true
            ),
            vec![Action::Update {
                job_id: "a".into(),
                container_id: "c-a".into(),
                memory_bytes: 512 << 20,
                nano_cpus: 0,
            }]
        );
        c.memory_bytes = 512 << 20;
        assert!(plan(
            std::slice::from_ref(&a),
            &[c.clone()],
            &HashSet::new(),
            &|_| true
        )
        .is_empty());
        // No limit in the spec: whatever the container has is left alone.
        a.spec = None;
        assert!(plan(&[a], &[c], &HashSet::new(), &|_| true).is_empty());
    }

    #[test]
    fn finished_containers_go_after_the_retention_and_old_attempts_at_once() {
        let hour = 3_600_000;
        let mut next = alloc("a", JobState::Running);
        next.attempt = 2;
        let mut old_attempt = container("a", "exited");
        old_attempt.attempt = 1;
        let mut finished = container("b", "exited");
        finished.finished_at_ms = 10 * hour;
        let mut never_ran = container("c", "created");
        never_ran.id = "c-never".into();
        let mut running_gone = container("d", "running");
        running_gone.finished_at_ms = 0;
        let mut current = container("a", "running");
        current.attempt = 2;
        current.id = "c-a2".into();
        let actual = [old_attempt, finished, never_ran, running_gone, current];
        let ids = |now| -> Vec<String> {
            cleanup(std::slice::from_ref(&next), &actual, now, 24 * hour)
                .into_iter()
                .map(|a| match a {
                    Action::Remove { container_id, .. } => container_id,
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        // Before b's retention: the old attempt and the never-started one.
        assert_eq!(ids(11 * hour), vec!["c-a", "c-never"]);
        // After it, b's too; never a running container or the current attempt.
        assert_eq!(ids(34 * hour), vec!["c-a", "c-b", "c-never"]);
    }

    #[test]
    fn zombies_are_running_containers_nothing_wants() {
        let desired = [alloc("a", JobState::Running)];
        let actual = [
            container("a", "running"),
            container("z", "running"),
            container("y", "exited"),
        ];
        let z: Vec<&str> = zombies(&desired, &actual)
            .iter()
            .map(|c| c.job_id.as_str())
            .collect();
        assert_eq!(z, vec!["z"]);
    }

    #[test]
    fn failed_creates_and_starts_are_not_retried() {
        let desired = [alloc("a", JobState::Placed)];
        let failed = HashSet::from(["a".to_string()]);
        assert!(plan(&desired, &[], &failed, &|_| true).is_empty());
        let created = [container("a", "created")];
        assert!(
            plan(&desired, &created, &failed, &|_| true).is_empty(),
            "a failed start is not retried"
        );
    }
}
