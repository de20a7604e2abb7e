//! The log format's promises: logs and snapshots written by older versions
//! (checked in under `testdata/log/`) replay to the same state; the current
//! version round-trips; a newer version is refused, never misread.

use std::path::PathBuf;

use serde_json::Value;

use super::super::format_view::{outcome, view};
use super::*;
use crate::state::{Applied, Rejection};

pub(crate) fn fixture(version: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("testdata/log/{version}"))
}

fn entries(version: &str) -> Vec<Vec<u8>> {
    let raw = std::fs::read(fixture(version).join("entries.jsonl")).unwrap();
    raw.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn expected(version: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixture(version).join("expected.json")).unwrap()).unwrap()
}

/// Applies entries as the controller's state machine does: an entry that
/// does not decode is skipped, alike on every replica.
fn replay(state: &mut State, from: u64, log: &[Vec<u8>]) -> Vec<Value> {
    let mut outcomes = Vec::new();
    for (i, data) in log.iter().enumerate() {
        let index = from + i as u64;
        let r: Result<Applied, Rejection> = match decode_entry(index, data) {
            Ok((version, cmd)) => state.apply_entry(index, version, &cmd),
            Err(Decode::Malformed(e)) => Err(Rejection::Malformed(e)),
            Err(e @ Decode::TooNew { .. }) => panic!("{e}"),
        };
        outcomes.push(outcome(&r));
    }
    outcomes
}

/// Outcomes compared with what the writing controller got; an undecodable
/// entry's message names serde's list of variants, which grows with every
/// new command, so only its kind is compared.
fn same_outcomes(got: &[Value], want: &[Value]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let undecodable = |v: &Value| {
            v["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("undecodable command"))
        };
        if undecodable(w) {
            assert!(undecodable(g), "entry {}: {g} where {w}", i + 1);
        } else {
            assert_eq!(g, w, "entry {}", i + 1);
        }
    }
}

#[test]
fn a_version_1_log_replays_to_the_same_state() {
    let log = entries("v1");
    let want = expected("v1");
    let mut state = State::default();
    let outcomes = replay(&mut state, 1, &log);
    same_outcomes(&outcomes, want["outcomes"].as_array().unwrap());
    assert_eq!(view(&state), want["state"]);
}

#[test]
fn a_version_1_snapshot_and_the_rest_of_its_log_give_the_same_state() {
    let log = entries("v1");
    let want = expected("v1");
    for at in [22u64, 44] {
        let snap = std::fs::read(fixture("v1").join(format!("snapshot-{at}.json"))).unwrap();
        assert_eq!(snap[0], b'{', "version 1 wrote bare JSON");
        let mut state = decode_state(at, &snap).unwrap();
        replay(&mut state, at + 1, &log[at as usize..]);
        assert_eq!(view(&state), want["state"], "from the snapshot at {at}");
    }
}

#[test]
fn the_current_version_round_trips_and_says_which_it_is() {
    let mut state = State::default();
    let mut written = Vec::new();
    for (i, data) in entries("v1").iter().enumerate() {
        let index = i as u64 + 1;
        if let Ok(cmd) = decode_command(index, data) {
            let bytes = encode_command(&cmd);
            assert_eq!(&bytes[..2], &[MAGIC, VERSION]);
            assert_eq!(decode_command(index, &bytes).unwrap(), cmd);
            written.push(bytes);
            let _ = state.apply(index, &cmd);
        }
    }
    let snap = encode_state(&state);
    assert_eq!(&snap[..2], &[MAGIC, VERSION]);
    assert_eq!(view(&decode_state(44, &snap).unwrap()), view(&state));
    // Applied as today's entries, the runs are charged (format 5); the
    // rest is what version 1 got.
    let mut now = view(&state);
    assert!(now["usage"]["runs"]
        .as_array()
        .is_some_and(|r| !r.is_empty()));
    now.as_object_mut().unwrap().remove("usage");
    assert_eq!(now, expected("v1")["state"]);
}

#[test]
fn a_newer_version_is_refused_with_what_to_do() {
    let mut entry = encode_command(&Command::Init {
        cluster_id: "c".into(),
    });
    entry[1] = VERSION + 1;
    let e = decode_command(1234, &entry).unwrap_err();
    assert!(matches!(e, Decode::TooNew { version, .. } if version == VERSION + 1));
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "log entry 1234 is in log format version {}",
            VERSION + 1
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("reads versions 1 to {VERSION}")) && msg.contains("upgrade it"),
        "{msg}"
    );

    let mut snap = encode_state(&State::default());
    snap[1] = 200;
    let msg = decode_state(50_000, &snap).unwrap_err().to_string();
    assert!(
        msg.starts_with("the snapshot at index 50000 is in log format version 200"),
        "{msg}"
    );

    // Not a version at all: malformed, not "newer".
    assert!(matches!(
        decode_command(1, &[MAGIC]),
        Err(Decode::Malformed(_))
    ));
    assert!(matches!(
        decode_command(1, &[MAGIC, 1, b'{', b'}']),
        Err(Decode::Malformed(_))
    ));
    assert!(matches!(
        decode_command(1, b"{\"Drain\":{}}"),
        Err(Decode::Malformed(_))
    ));
}

#[test]
#[ignore = "one-off: writes the v2 fixture (the v1 commands, as version 2 writes them)"]
fn write_v2_log_fixture() {
    if std::env::var_os("BERTH_WRITE_LOG_FIXTURE").is_none() {
        return;
    }
    let dir = fixture("v2");
    std::fs::create_dir_all(&dir).unwrap();
    let mut state = State::default();
    let mut log = Vec::new();
    let mut outcomes = Vec::new();
    for (i, data) in entries("v1").iter().enumerate() {
        let index = i as u64 + 1;
        // The one undecodable entry stays as it was: a reader must skip it
        // in any version.
        let bytes = match decode_command(index, data) {
            Ok(cmd) => encode_command(&cmd),
            Err(_) => data.clone(),
        };
        outcomes.extend(replay(&mut state, index, std::slice::from_ref(&bytes)));
        // A snapshot-N is the state after entry N, as in v1.
        if index == 22 || index == 44 {
            std::fs::write(
                dir.join(format!("snapshot-{index}.bin")),
                encode_state(&state),
            )
            .unwrap();
        }
        log.push(bytes);
    }
    write_log_fixture(&dir, &log, outcomes, &state);
}

/// Writes a fixture's `entries.hex` (entries are binary: one per line,
/// hex) and `expected.json` (each entry's outcome, the final state's view).
/// Writes fixture `version` from `script` (with `BERTH_WRITE_LOG_FIXTURE`
/// set; else nothing): each entry as this version encodes it, the state
/// after entry `snapshot_at`, each outcome and the final state.
pub(crate) fn write_script_fixture(version: &str, script: &[Command], snapshot_at: u64) {
    if std::env::var_os("BERTH_WRITE_LOG_FIXTURE").is_none() {
        return;
    }
    let dir = fixture(version);
    std::fs::create_dir_all(&dir).unwrap();
    let mut state = State::default();
    let (mut log, mut outcomes) = (Vec::new(), Vec::new());
    for (i, cmd) in script.iter().enumerate() {
        let index = i as u64 + 1;
        log.push(encode_command(cmd));
        outcomes.push(outcome(&state.apply(index, cmd)));
        if index == snapshot_at {
            std::fs::write(
                dir.join(format!("snapshot-{index}.bin")),
                encode_state(&state),
            )
            .unwrap();
        }
    }
    write_log_fixture(&dir, &log, outcomes, &state);
}

pub(crate) fn write_log_fixture(
    dir: &std::path::Path,
    log: &[Vec<u8>],
    outcomes: Vec<Value>,
    state: &State,
) {
    let lines: Vec<String> = log.iter().map(|b| hex(b)).collect();
    std::fs::write(dir.join("entries.hex"), lines.join("\n") + "\n").unwrap();
    let expected = serde_json::json!({ "outcomes": outcomes, "state": view(state) });
    std::fs::write(
        dir.join("expected.json"),
        serde_json::to_vec_pretty(&expected).unwrap(),
    )
    .unwrap();
}

#[test]
fn a_version_2_log_and_snapshot_replay_to_the_same_state() {
    replays_to_the_same_state("v2", 2, 22);
}

/// The fixture in `version` (hex entries, a snapshot after entry `snap`)
/// replays, from the start and from the snapshot, to its expected state.
pub(crate) fn replays_to_the_same_state(version: &str, byte: u8, snap: u64) {
    let dir = fixture(version);
    let log: Vec<Vec<u8>> = std::fs::read_to_string(dir.join("entries.hex"))
        .unwrap()
        .lines()
        .map(unhex)
        .collect();
    let want = expected(version);
    let mut state = State::default();
    let outcomes = replay(&mut state, 1, &log);
    same_outcomes(&outcomes, want["outcomes"].as_array().unwrap());
    assert_eq!(view(&state), want["state"]);
    let bytes = std::fs::read(dir.join(format!("snapshot-{snap}.bin"))).unwrap();
    assert_eq!(bytes[..2], [MAGIC, byte]);
    let mut state = decode_state(snap, &bytes).unwrap();
    replay(&mut state, snap + 1, &log[snap as usize..]);
    assert_eq!(view(&state), want["state"]);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
