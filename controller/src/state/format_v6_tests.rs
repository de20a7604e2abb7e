//! The version-6 log fixture (`testdata/log/v6`): more of docker run in
//! the spec (`--hostname`, `--ulimit`, `--cap-drop`, `--label`, `--rm`,
//! `--expose`, `--gpus all`, a host port Berth picks), hosts' CPU and
//! memory, and placements holding picked ports, CPU and memory — with the
//! refusals `apply` makes of them (CPU over a host's, a picked port in
//! use) and a host-network gang whose MASTER_PORT is its picked port.

use std::collections::BTreeMap;

use super::format::tests::{replays_to_the_same_state, write_script_fixture};
use super::test_cmds::{exited, placement, started};
use super::*;

fn host(name: &str, gpus: u32, millicpus: u64, memory_bytes: u64) -> Command {
    let Command::RegisterNode(n) = super::test_cmds::node(name, gpus, "H100") else {
        unreachable!()
    };
    Command::RegisterNode(NodeRecord {
        millicpus,
        memory_bytes,
        numa_nodes: u32::from(millicpus > 0) * 2,
        ..n
    })
}

fn submit(id: &str, spec: JobSpec) -> Command {
    Command::Submit {
        id: id.into(),
        name: format!("{id}-name"),
        spec: Box::new(JobSpec {
            image: "lab/train:1".into(),
            user: "alice".into(),
            role: "user".into(),
            ..spec
        }),
        at_ms: 1000,
        request_id: format!("req-{id}"),
    }
}

/// `id` placed on `node`'s GPUs, holding `ports` picked, CPU and memory.
fn place(id: &str, node: &str, gpus: &[u32], ports: &[u32], held: (u64, u64)) -> Placement {
    Placement {
        ports: ports.to_vec(),
        millicpus: held.0,
        memory_bytes: held.1,
        ..placement(id, node, gpus)
    }
}

fn plan(placements: Vec<Placement>) -> Command {
    Command::Place {
        placements,
        preemptions: Vec::new(),
    }
}

fn script() -> Vec<Command> {
    let web = JobSpec {
        gpus: 1,
        hostname: "trainer".into(),
        ulimits: vec![Ulimit {
            name: "memlock".into(),
            soft: -1,
            hard: -1,
        }],
        cap_drop: vec!["NET_RAW".into()],
        labels: BTreeMap::from([("team".to_string(), "vision".to_string())]),
        auto_remove: true,
        expose: vec!["8888/tcp".into()],
        // -p 6006 (Berth picks) and -p 16006:6007.
        ports: vec![
            PortMapping {
                host_port: 0,
                container_port: 6006,
                ..Default::default()
            },
            PortMapping {
                host_port: 16006,
                container_port: 6007,
                ..Default::default()
            },
        ],
        nano_cpus: 4_000_000_000,
        ..JobSpec::default()
    };
    vec![
        Command::Init {
            cluster_id: "v6".into(),
        },
        // a: 8 CPUs, 64 GiB; b: nothing reported (not counted).
        host("a", 4, 8_000, 64 << 30),
        host("b", 2, 0, 0),
        submit("j1", web),
        plan(vec![place("j1", "a", &[0], &[30000], (4_000, 16 << 30))]),
        started("j1", 2000),
        // Every GPU of b.
        submit(
            "j2",
            JobSpec {
                gpus_all: true,
                ..JobSpec::default()
            },
        ),
        plan(vec![place("j2", "b", &[0, 1], &[], (0, 0))]),
        // 6 CPUs where 4 of 8 are held: refused.
        submit(
            "j3",
            JobSpec {
                gpus: 1,
                nano_cpus: 6_000_000_000,
                ..JobSpec::default()
            },
        ),
        plan(vec![place("j3", "a", &[1], &[], (6_000, 0))]),
        // A picked port already held on a: refused.
        submit(
            "j4",
            JobSpec {
                ports: vec![PortMapping {
                    host_port: 0,
                    container_port: 80,
                    ..Default::default()
                }],
                ..JobSpec::default()
            },
        ),
        plan(vec![place("j4", "a", &[], &[30000], (0, 0))]),
        plan(vec![place("j4", "a", &[], &[30001], (0, 0))]),
        // j1 ends: its CPU, memory and ports are free again; j3 fits.
        exited("j1", 0, 5000),
        plan(vec![place("j3", "a", &[1], &[], (6_000, 8 << 30))]),
        // Alice may hold 8 CPUs at once: j3 holds 6, so 4 more is refused.
        Command::SetQuota {
            user: "alice".into(),
            gpus: None,
            cpus_memory: Some((8_000, 0)),
        },
        submit(
            "j5",
            JobSpec {
                nano_cpus: 4_000_000_000,
                ..JobSpec::default()
            },
        ),
        plan(vec![place("j5", "a", &[], &[], (4_000, 0))]),
        plan(vec![place("j5", "a", &[], &[], (2_000, 0))]),
        // A gang on the host network: each task's host holds a picked
        // rendezvous port; rank 0's is MASTER_PORT.
        submit(
            "g",
            JobSpec {
                nodes: 2,
                network: "host".into(),
                ..JobSpec::default()
            },
        ),
        plan(vec![
            place("g.0", "a", &[], &[30002], (0, 0)),
            place("g.1", "b", &[], &[30000], (0, 0)),
        ]),
    ]
}

/// The entry after which the fixture's snapshot is taken.
const SNAPSHOT_AT: u64 = 9;

#[test]
#[ignore = "one-off: writes the v6 fixture (run once, with BERTH_WRITE_LOG_FIXTURE set)"]
fn write_v6_log_fixture() {
    write_script_fixture("v6", &script(), SNAPSHOT_AT);
}

#[test]
fn a_version_6_log_and_snapshot_replay_to_the_same_state() {
    replays_to_the_same_state("v6", 6, SNAPSHOT_AT);
    // What the fixture says, in figures a person can check.
    let mut state = State::default();
    let mut outcomes = Vec::new();
    for (i, cmd) in script().iter().enumerate() {
        outcomes.push(state.apply(i as u64 + 1, cmd).unwrap_or_default());
    }
    let refused = |i: usize| {
        outcomes[i]
            .rejected
            .iter()
            .map(|r| r.to_string())
            .collect::<String>()
    };
    assert!(
        refused(9).contains("thousandths of a CPU free"),
        "{}",
        refused(9)
    );
    assert!(
        refused(11).contains("host port 30000 is held"),
        "{}",
        refused(11)
    );
    assert_eq!(state.jobs["j2"].gpus.len(), 2, "--gpus all: both of b's");
    assert_eq!(state.user_gpus("alice"), 2 + 1, "j2's two and j3's one");
    assert!(
        refused(17).contains("CPU or memory quota"),
        "{}",
        refused(17)
    );
    assert_eq!(state.user_held("alice"), (8_000, 8 << 30), "j3 and j5");
    assert_eq!(
        state.held_on("a"),
        (8_000, 8 << 30),
        "j3 and j5, j1 released"
    );
    let ports: Vec<(u32, String)> = state.ports_on("a").collect();
    assert_eq!(
        ports,
        [(30001, "tcp".to_string()), (30002, "tcp".to_string())]
    );
    let env = &state.jobs["g.1"].task_env;
    assert!(env.contains(&"MASTER_PORT=30002".to_string()), "{env:?}");
    assert!(env.contains(&"MASTER_ADDR=a".to_string()), "{env:?}");
}
