//! The version-5 log fixture (`testdata/log/v5`): runs charged to the
//! usage ledger as they end — an exit, a restart, a preemption, a failure
//! before start (not charged), a GPU slice, a stop — then `CompactUsage`
//! folding the older runs into day sums; replayed by today's reader to
//! the same state and ledger.

use super::format::tests::{replays_to_the_same_state, write_script_fixture};
use super::test_cmds::{exited, node, place, started};
use super::*;

const H: i64 = 3_600_000;
const DAY: i64 = 24 * H;

fn submit(id: &str, user: &str, spec: JobSpec) -> Command {
    Command::Submit {
        id: id.into(),
        name: format!("{id}-name"),
        spec: Box::new(JobSpec {
            image: "lab/train:1".into(),
            user: user.into(),
            role: "user".into(),
            ..spec
        }),
        at_ms: DAY,
        request_id: format!("req-{id}"),
    }
}

fn script() -> Vec<Command> {
    let gpus = |n: u32| JobSpec {
        gpus: n,
        nano_cpus: 8_000_000_000,
        memory_bytes: 32 << 30,
        ..JobSpec::default()
    };
    vec![
        Command::Init {
            cluster_id: "v5".into(),
        },
        node("a", 4, "H100"),
        node("b", 2, "H100"),
        // Alice: 2 GPUs from 23:00 to 01:00 (across midnight), exit 0.
        submit("j1", "alice", gpus(2)),
        place("j1", "a", &[0, 1], &[]),
        started("j1", DAY + 23 * H),
        exited("j1", 0, 2 * DAY + H),
        // Bob: restarts once on failure, charged per run.
        submit(
            "j2",
            "bob",
            JobSpec {
                restart: RestartPolicy::OnFailure { max: Some(2) },
                ..gpus(1)
            },
        ),
        place("j2", "b", &[0], &[]),
        started("j2", 2 * DAY),
        exited("j2", 1, 2 * DAY + H),
        place("j2", "b", &[0], &[]),
        started("j2", 2 * DAY + 2 * H),
        // A preemptible low-priority job, preempted by carol's.
        submit(
            "j3",
            "dave",
            JobSpec {
                preemptible: true,
                ..gpus(2)
            },
        ),
        place("j3", "a", &[2, 3], &[]),
        started("j3", 2 * DAY + 3 * H),
        submit(
            "j4",
            "carol",
            JobSpec {
                priority: 50,
                ..gpus(2)
            },
        ),
        place("j4", "a", &[2, 3], &["j3"]),
        exited("j3", 143, 2 * DAY + 4 * H),
        // A failure before start: nothing charged.
        submit("j5", "erin", gpus(1)),
        place("j5", "b", &[1], &[]),
        Command::Failed {
            job_id: "j5".into(),
            message: "bad mount".into(),
            at_ms: 2 * DAY + 4 * H,
        },
        // A 20 GiB slice, stopped by its user.
        submit(
            "j6",
            "erin",
            JobSpec {
                gpu_memory_bytes: 20 << 30,
                ..JobSpec::default()
            },
        ),
        place("j6", "b", &[1], &[]),
        started("j6", 2 * DAY + 5 * H),
        Command::Cancel {
            job_id: "j6".into(),
            at_ms: 2 * DAY + 6 * H,
        },
        exited("j6", 137, 2 * DAY + 6 * H),
        exited("j2", 0, 3 * DAY),
        // Runs that ended before day 3 are folded into day sums.
        Command::CompactUsage { before_ms: 3 * DAY },
    ]
}

/// The entry after which the fixture's snapshot is taken.
const SNAPSHOT_AT: u64 = 12;

#[test]
#[ignore = "one-off: writes the v5 fixture (run once, with BERTH_WRITE_LOG_FIXTURE set)"]
fn write_v5_log_fixture() {
    write_script_fixture("v5", &script(), SNAPSHOT_AT);
}

#[test]
fn a_version_5_log_and_snapshot_replay_to_the_same_state_and_ledger() {
    replays_to_the_same_state("v5", 5, SNAPSHOT_AT);
    // What the fixture's ledger says, in figures a person can check.
    let mut state = State::default();
    for (i, cmd) in script().iter().enumerate() {
        state.apply(i as u64 + 1, cmd).unwrap_or_default();
    }
    let by_user = usage::report(&state.usage, &[], None, 0, 0, usage::By::User);
    let gpu_h = |u: &str| {
        by_user
            .iter()
            .find(|r| r.key == u)
            .map_or(0.0, |r| r.totals.gpu_ms as f64 / H as f64)
    };
    assert_eq!(gpu_h("alice"), 4.0, "2 GPUs × 2 h");
    assert_eq!(gpu_h("bob"), 1.0 + 22.0, "1 h, then 22 h after the restart");
    assert_eq!(gpu_h("dave"), 2.0, "2 GPUs × 1 h until preempted");
    assert_eq!(gpu_h("erin"), 0.0, "a slice holds no whole GPU");
    let erin = by_user.iter().find(|r| r.key == "erin").unwrap().totals;
    assert_eq!(erin.gpu_mib_ms, 20 * 1024 * H as u64, "20 GiB × 1 h");
    assert_eq!(erin.runs, 1, "the failure before start is not a run");
    assert_eq!(
        state.usage.runs.len(),
        1,
        "only bob's last run is after the cut"
    );
}
