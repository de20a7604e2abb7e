//! The version-4 log fixture (`testdata/log/v4`): the commands versions 3
//! and 4 added — tokens, the policy, join tokens, docker's `-u` and
//! privileges, cordon, drain, evict, remove, lost hosts — as this version
//! wrote them, replayed by today's reader to the same state.

use super::format::tests::{replays_to_the_same_state, write_script_fixture};
use super::test_cmds;
use super::*;

fn node(name: &str, gpus: u32) -> Command {
    test_cmds::node(name, gpus, "A100")
}

fn submit(id: &str, spec: JobSpec) -> Command {
    Command::Submit {
        id: id.into(),
        name: format!("{id}-name"),
        spec: Box::new(JobSpec {
            image: "lab/train:1".into(),
            gpus: 1,
            user: "alice".into(),
            role: "user".into(),
            ..spec
        }),
        at_ms: 1_000,
        request_id: format!("req-{id}"),
    }
}

fn place(id: &str, node: &str, gpu: u32) -> Command {
    test_cmds::place(id, node, &[gpu], &[])
}

fn script() -> Vec<Command> {
    let started = |id: &str| Command::Started {
        job_id: id.into(),
        container_id: format!("c-{id}"),
        at_ms: 2_000,
    };
    vec![
        Command::Init {
            cluster_id: "v4".into(),
        },
        node("a", 2),
        node("b", 1),
        Command::CreateToken(TokenRecord {
            id: "tok1".into(),
            user: "alice".into(),
            role: "user".into(),
            hash: "ab".repeat(32),
            created_ms: 500,
            expires_ms: 0,
        }),
        Command::CreateToken(TokenRecord {
            id: "join1".into(),
            user: "c".into(),
            role: "join".into(),
            hash: "cd".repeat(32),
            created_ms: 500,
            expires_ms: 90_000,
        }),
        Command::SetPolicy(berth_proto::policy::Policy::default()),
        submit(
            "j1",
            JobSpec {
                restart: RestartPolicy::Always,
                on_host_lost: OnHostLost::Restart,
                pids_limit: 64,
                run_as: "1000:1000".into(),
                cap_add: vec!["SYS_PTRACE".into()],
                ipc: "host".into(),
                ..Default::default()
            },
        ),
        submit(
            "j2",
            JobSpec {
                on_host_lost: OnHostLost::Wait,
                pids_limit: -1,
                ..Default::default()
            },
        ),
        submit("j3", JobSpec::default()),
        place("j1", "a", 0),
        place("j2", "a", 1),
        started("j1"),
        started("j2"),
        Command::Cordon {
            node: "a".into(),
            drain_deadline_ms: None,
            at_ms: 3_000,
        },
        // Refused: a is cordoned.
        place("j3", "a", 0),
        place("j3", "b", 0),
        started("j3"),
        // Refused: j2 waits for its host.
        Command::Lost {
            job_id: "j2".into(),
            message: "its host a stopped reporting for 30 s (lost)".into(),
            at_ms: 4_000,
        },
        Command::Cordon {
            node: "a".into(),
            drain_deadline_ms: Some(9_000),
            at_ms: 5_000,
        },
        Command::Evict {
            job_ids: vec!["j1".into()],
            reason: "its host a was drained".into(),
        },
        Command::Exited {
            job_id: "j1".into(),
            exit_code: 143,
            at_ms: 6_000,
        },
        Command::Uncordon { node: "a".into() },
        Command::Lost {
            job_id: "j3".into(),
            message: "its host b stopped reporting for 30 s (lost)".into(),
            at_ms: 7_000,
        },
        Command::RemoveNode {
            node: "b".into(),
            at_ms: 8_000,
        },
        // Refused: no node b any more.
        Command::Uncordon { node: "b".into() },
        Command::UseJoinToken { id: "join1".into() },
        // Refused: used already.
        Command::UseJoinToken { id: "join1".into() },
        Command::RevokeTokens {
            ids: vec!["tok1".into()],
        },
        // What the final state keeps: a drain in progress, a token.
        Command::Cordon {
            node: "a".into(),
            drain_deadline_ms: Some(20_000),
            at_ms: 9_000,
        },
        Command::CreateToken(TokenRecord {
            id: "tok2".into(),
            user: "vic".into(),
            role: "viewer".into(),
            hash: "ef".repeat(32),
            created_ms: 9_500,
            expires_ms: 0,
        }),
    ]
}

/// The entry after which the fixture's snapshot is taken.
const SNAPSHOT_AT: u64 = 14;

#[test]
#[ignore = "one-off: writes the v4 fixture (run once, with BERTH_WRITE_LOG_FIXTURE set)"]
fn write_v4_log_fixture() {
    write_script_fixture("v4", &script(), SNAPSHOT_AT);
}

#[test]
fn a_version_4_log_and_snapshot_replay_to_the_same_state() {
    replays_to_the_same_state("v4", 4, SNAPSHOT_AT);
}
