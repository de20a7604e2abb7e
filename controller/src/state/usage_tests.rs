//! The usage ledger through `apply`, as the log drives it, and its reports.

use super::*;
use crate::state::test_cmds::{exited, place, started};
use crate::state::{test_cmds, Command, JobSpec, RestartPolicy};

fn node(name: &str, gpus: u32) -> Command {
    test_cmds::node(name, gpus, "A100")
}

const H: i64 = 3_600_000;

fn submit(id: &str, user: &str, gpus: u32, restart: RestartPolicy) -> Command {
    Command::Submit {
        id: id.into(),
        name: format!("{id}-name"),
        spec: JobSpec {
            image: "i".into(),
            gpus,
            user: user.into(),
            restart,
            nano_cpus: 4_000_000_000,
            memory_bytes: 8 << 30,
            ..Default::default()
        }
        .into(),
        at_ms: 0,
        request_id: String::new(),
    }
}

/// Applies `cmds` from index 1 in log format `version`.
fn run(version: u8, cmds: &[Command]) -> State {
    let mut s = State::default();
    for (i, c) in cmds.iter().enumerate() {
        s.apply_entry(i as u64 + 1, version, c).unwrap();
    }
    s
}

#[test]
fn a_run_is_charged_from_its_start_to_its_end() {
    let s = run(
        5,
        &[
            node("a", 4),
            submit("j", "alice", 2, RestartPolicy::No),
            place("j", "a", &[0, 1], &[]),
            started("j", 10 * H),
            exited("j", 0, 12 * H),
        ],
    );
    let r = &s.usage.runs[0];
    assert_eq!(
        (r.user.as_str(), r.node.as_str(), r.model.as_str()),
        ("alice", "a", "A100")
    );
    assert_eq!(
        (r.gpus, r.started_at_ms, r.finished_at_ms),
        (2, 10 * H, 12 * H)
    );
    assert_eq!((r.outcome.as_str(), r.exit_code), ("exited", Some(0)));
    let rows = report(&s.usage, &[], None, 0, 0, By::User);
    let t = rows[0].totals;
    assert_eq!(t.gpu_ms, 4 * H as u64, "2 GPUs for 2 h");
    assert_eq!(t.cpu_ms, 8 * H as u64, "4 CPUs for 2 h");
    assert_eq!(t.memory_mib_ms, 8 * 1024 * 2 * H as u64);
    assert_eq!(t.wall_ms, 2 * H as u64);
}

#[test]
fn each_run_of_a_restarted_job_is_charged_and_a_run_that_never_started_is_not() {
    let s = run(
        5,
        &[
            node("a", 1),
            submit("j", "bob", 1, RestartPolicy::OnFailure { max: Some(3) }),
            place("j", "a", &[0], &[]),
            started("j", H),
            exited("j", 1, 2 * H),
            place("j", "a", &[0], &[]),
            started("j", 3 * H),
            exited("j", 0, 5 * H),
            submit("k", "bob", 1, RestartPolicy::No),
            place("k", "a", &[0], &[]),
            Command::Failed {
                job_id: "k".into(),
                message: "bad mount".into(),
                at_ms: 6 * H,
            },
        ],
    );
    let outcomes: Vec<&str> = s.usage.runs.iter().map(|r| r.outcome.as_str()).collect();
    assert_eq!(outcomes, ["restarted", "exited"]);
    let t = report(&s.usage, &[], Some("bob"), 0, 0, By::User)[0].totals;
    assert_eq!((t.runs, t.gpu_ms), (2, 3 * H as u64));
}

#[test]
fn entries_of_an_older_format_charge_nothing() {
    let s = run(
        4,
        &[
            node("a", 1),
            submit("j", "alice", 1, RestartPolicy::No),
            place("j", "a", &[0], &[]),
            started("j", H),
            exited("j", 0, 2 * H),
        ],
    );
    assert!(s.usage.is_empty(), "a version-4 controller keeps no ledger");
}

#[test]
fn compacting_keeps_every_users_totals_and_splits_runs_at_midnight() {
    let day = DAY_MS;
    let mut s = run(
        5,
        &[
            node("a", 2),
            submit("x", "alice", 1, RestartPolicy::No),
            place("x", "a", &[0], &[]),
            // 22:00 on day 1 to 02:00 on day 2.
            started("x", day + 22 * H),
            exited("x", 0, 2 * day + 2 * H),
            submit("y", "carol", 1, RestartPolicy::No),
            place("y", "a", &[0], &[]),
            started("y", 5 * day),
            exited("y", 0, 5 * day + H),
        ],
    );
    let before = report(&s.usage, &[], None, 0, 0, By::User);
    let by_day = report(&s.usage, &[], None, 0, 0, By::Day);
    assert_eq!(by_day[0].key, "1970-01-02");
    assert_eq!(by_day[0].totals.gpu_ms, 2 * H as u64);
    assert_eq!(by_day[1].key, "1970-01-03");
    assert_eq!(by_day[1].totals.gpu_ms, 2 * H as u64);
    s.apply(100, &Command::CompactUsage { before_ms: 4 * day })
        .unwrap();
    assert_eq!(s.usage.runs.len(), 1, "carol's later run stays in detail");
    assert_eq!(s.usage.days.len(), 2, "alice's run, split at midnight");
    assert_eq!(report(&s.usage, &[], None, 0, 0, By::User), before);
    assert_eq!(report(&s.usage, &[], None, 0, 0, By::Day), by_day);
    // Compacting again changes nothing; a snapshot carries the ledger.
    let again = s.usage.clone();
    s.apply(101, &Command::CompactUsage { before_ms: 4 * day })
        .unwrap();
    assert_eq!(s.usage, again);
    let restored =
        crate::state::format::decode_state(101, &crate::state::format::encode_state(&s)).unwrap();
    assert_eq!(restored.usage, s.usage);
}

#[test]
fn a_report_clips_runs_to_its_window_and_counts_live_runs_so_far() {
    let s = run(
        5,
        &[
            node("a", 1),
            submit("j", "alice", 1, RestartPolicy::No),
            place("j", "a", &[0], &[]),
            started("j", H),
            exited("j", 0, 10 * H),
        ],
    );
    let t = report(&s.usage, &[], None, 4 * H, 6 * H, By::User)[0].totals;
    assert_eq!(t.gpu_ms, 2 * H as u64);
    let live = UsageRecord {
        user: "bob".into(),
        gpus: 4,
        started_at_ms: 9 * H,
        finished_at_ms: 11 * H,
        outcome: "running".into(),
        ..Default::default()
    };
    let rows = report(&s.usage, &[live], None, 0, 0, By::User);
    assert_eq!(rows[1].key, "bob");
    assert_eq!(rows[1].totals.gpu_ms, 8 * H as u64);
    assert!(report(&s.usage, &[], Some("carol"), 0, 0, By::User).is_empty());
}

#[test]
fn days_print_as_dates() {
    assert_eq!(day_text(0), "1970-01-01");
    assert_eq!(day_text(1_795_824_000_000), "2026-11-28");
    assert_eq!(day_text(951_782_400_000), "2000-02-29");
    assert_eq!(
        split_days(DAY_MS - 10, DAY_MS + 5),
        vec![(0, 10), (DAY_MS, 5)]
    );
}

#[test]
fn the_charts_one_pass_agrees_with_the_report() {
    let s = run(
        5,
        &[
            node("a", 2),
            submit("x", "alice", 2, RestartPolicy::No),
            place("x", "a", &[0, 1], &[]),
            started("x", DAY_MS + 23 * H),
            exited("x", 0, 2 * DAY_MS + H),
        ],
    );
    let chart = gpu_ms_by_user_day(&s.usage, &[], 0);
    let days: Vec<(i64, u64)> = chart["alice"].iter().map(|(d, ms)| (*d, *ms)).collect();
    assert_eq!(days, [(DAY_MS, 2 * H as u64), (2 * DAY_MS, 2 * H as u64)]);
    let from_day_two = gpu_ms_by_user_day(&s.usage, &[], 2 * DAY_MS);
    assert_eq!(from_day_two["alice"].len(), 1);
}
