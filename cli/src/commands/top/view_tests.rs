use super::*;
use berth_proto::v1::{Gpu, GpuProcess, GpuRef, GpuSlice, JobSpec};

fn gpu(index: u32, util: u32, job: &str) -> Gpu {
    Gpu {
        index,
        uuid: format!("u{index}"),
        model: "A100".into(),
        memory_total_bytes: 80 << 30,
        memory_used_bytes: u64::from(util) << 28,
        utilization_percent: util,
        job_id: job.into(),
        ..Gpu::default()
    }
}

fn job(id: &str, user: &str, state: JobState, gpus: &[u32]) -> Job {
    Job {
        id: id.into(),
        name: format!("{id}-name"),
        state: state as i32,
        spec: Some(JobSpec {
            user: user.into(),
            gpus: gpus.len().max(1) as u32,
            ..JobSpec::default()
        }),
        gpus: gpus
            .iter()
            .map(|i| GpuRef {
                index: *i,
                uuid: format!("u{i}"),
            })
            .collect(),
        ..Job::default()
    }
}

fn snapshot() -> Snapshot {
    let mut slice = gpu(3, 10, "");
    slice.slices = vec![GpuSlice {
        job_id: "s1".into(),
        memory_bytes: 20 << 30,
    }];
    let mut busy = gpu(2, 0, "");
    busy.foreign_processes = vec![GpuProcess {
        pid: 42,
        name: "python".into(),
        used_memory_bytes: 0,
    }];
    let mut s1 = job("s1", "carol", JobState::Running, &[3]);
    s1.spec.as_mut().unwrap().gpus = 0;
    s1.spec.as_mut().unwrap().gpu_memory_bytes = 20 << 30;
    Snapshot {
        nodes: vec![
            Node {
                name: "b-host".into(),
                status: NodeStatus::Ready as i32,
                gpus: vec![gpu(0, 90, "j1"), gpu(1, 30, "j2"), busy, slice],
                ..Node::default()
            },
            Node {
                name: "a-host".into(),
                status: NodeStatus::Down as i32,
                gpus: vec![Gpu {
                    uuid: "a0".into(),
                    ..gpu(0, 0, "")
                }],
                ..Node::default()
            },
        ],
        jobs: vec![
            job("j1", "alice", JobState::Running, &[0]),
            job("j2", "bob", JobState::Running, &[1]),
            s1,
            job("q1", "alice", JobState::Queued, &[]),
        ],
        revision: 7,
        at_ms: 10_000,
    }
}

#[test]
fn every_gpu_names_its_holder_and_foreign_processes() {
    let lines = gpu_lines(&snapshot(), &Filter::default(), Sort::Host);
    let hosts: Vec<(&str, u32)> = lines.iter().map(|l| (l.host.as_str(), l.index)).collect();
    assert_eq!(
        hosts,
        [
            ("a-host", 0),
            ("b-host", 0),
            ("b-host", 1),
            ("b-host", 2),
            ("b-host", 3)
        ]
    );
    assert!(!lines[0].up);
    assert_eq!(lines[1].jobs, ["j1-name (j1)"]);
    assert_eq!(lines[1].users, ["alice"]);
    assert_eq!(lines[3].foreign, ["42 python"]);
    assert_eq!(lines[4].users, ["carol"], "a slice's holder");
}

#[test]
fn sorting_and_filters_pick_and_order_lines() {
    let s = snapshot();
    let util = gpu_lines(&s, &Filter::default(), Sort::Util);
    assert_eq!(util[0].util_percent, 90);
    let by_user = gpu_lines(&s, &Filter::default(), Sort::User);
    assert_eq!(by_user[0].users, ["alice"]);
    assert!(by_user.last().unwrap().users.is_empty(), "free GPUs last");
    let bob = Filter {
        user: Some("bob".into()),
        host: None,
    };
    let lines = gpu_lines(&s, &bob, Sort::Host);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].index, 1);
    let host = Filter {
        user: None,
        host: Some("a-host".into()),
    };
    assert_eq!(gpu_lines(&s, &host, Sort::Host).len(), 1);
    assert_eq!(Sort::Host.next().next().next().next(), Sort::Host);
}

#[test]
fn users_share_counts_slices_by_memory_and_only_hosts_that_are_up() {
    let u = users(&snapshot());
    let alice = u.iter().find(|l| l.user == "alice").unwrap();
    assert_eq!((alice.gpus, alice.running, alice.queued), (1.0, 1, 1));
    assert_eq!(alice.share, 0.25, "1 of the 4 GPUs of the host that is up");
    let carol = u.iter().find(|l| l.user == "carol").unwrap();
    assert_eq!(carol.gpus, 0.25, "20 of 80 GiB");
}

#[test]
fn the_queue_and_the_plain_text_say_who_waits() {
    let s = snapshot();
    let q = queue(&s, &Filter::default());
    assert_eq!(q.len(), 1);
    assert_eq!((q[0].user.as_str(), q[0].waiting_s), ("alice", 10));
    let text = plain(&s, &Filter::default(), Sort::Host);
    assert!(text.contains("b-host gpu0 up util 90%"), "{text}");
    assert!(text.contains("a-host gpu0 DOWN"), "{text}");
    assert!(text.contains("foreign: 42 python"), "{text}");
    assert!(text.contains("queued q1 q1-name alice"), "{text}");
    assert_eq!(bar(50, 10), "█████·····");
}
