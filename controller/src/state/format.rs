//! How commands and the state are written into raft log entries and
//! snapshots, with an explicit format version on every one.
//!
//! - Version 1 (until this format existed): an entry is `serde_json` of
//!   `Command`, a snapshot `serde_json` of `State`, no marker; the job spec
//!   was the API's. Such bytes begin with `{`.
//! - Version 2: `MAGIC`, the version byte, then `serde_json` of the state's
//!   own types (`spec`, `records`, `command`), whose names are frozen.
//! - Version 3: the same encoding; adds the access commands (tokens, the
//!   mount and privilege policy), jobs' owner role and docker's `-u` and
//!   privilege fields. A version-2 controller cannot apply those.
//! - Version 4: the same encoding; adds the node commands (cordon, drain,
//!   evict, remove, lost) and jobs' `on_host_lost`.
//! - Version 5: the same encoding; its entries charge the usage ledger as
//!   runs end (a rule of `apply`, so only for entries written in 5 on:
//!   see `State::apply_entry`), and `CompactUsage` folds old runs.
//! - Version 6: the same encoding; adds more of docker run to the job spec
//!   (`--hostname`, `--ulimit`, `--cap-drop`, `--label`, `--rm`,
//!   `--expose`, `--gpus all`, host ports Berth picks), nodes' CPU and
//!   memory, and placements' picked ports and CPU and memory held (which
//!   `apply` checks against the host's).
//!
//! Readers keep every older version; a controller that meets a newer one
//! stops rather than misread it (`Decode::TooNew`). The rule for changing
//! what the log means is in `docs/architecture.md` ("The log format").

use super::{Command, State};

/// This controller writes this version, and reads it and every older one.
pub const VERSION: u8 = 6;

/// First byte of every versioned entry and snapshot: never the first byte
/// of JSON (or of UTF-8 text), so version 1's bytes are told apart.
pub const MAGIC: u8 = 0xB7;

/// Why bytes from the log could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Decode {
    /// Written by a newer controller: reading on could misread the log.
    #[error("{what} is in log format version {version}, but this berth-controller ({release}) reads versions 1 to {VERSION}: upgrade it to the release the other controllers run (docs/architecture.md, \"Rolling upgrades\")", release = env!("CARGO_PKG_VERSION"))]
    TooNew { what: String, version: u8 },
    /// A known version whose content does not decode.
    #[error("{0}")]
    Malformed(String),
}

/// The bytes of a log entry carrying `cmd`, in the current version.
pub fn encode_command(cmd: &Command) -> Vec<u8> {
    // Serialised straight after the header: every proposal passes here.
    let mut out = header(256);
    serde_json::to_writer(&mut out, cmd).expect("commands serialise");
    out
}

/// The command in a log entry written by this or an older version.
/// `index` only names the entry in errors.
pub fn decode_command(index: u64, data: &[u8]) -> Result<Command, Decode> {
    decode_entry(index, data).map(|(_, cmd)| cmd)
}

/// The format version an entry was written in, and its command.
pub fn decode_entry(index: u64, data: &[u8]) -> Result<(u8, Command), Decode> {
    let body = payload(data, || format!("log entry {index}"))?;
    let version = match data {
        [MAGIC, v, ..] => *v,
        _ => 1,
    };
    let cmd = serde_json::from_slice(body).map_err(|e| Decode::Malformed(e.to_string()))?;
    Ok((version, cmd))
}

/// The bytes of a snapshot of `state`, in the current version.
pub fn encode_state(state: &State) -> Vec<u8> {
    let mut out = header(1 << 20);
    serde_json::to_writer(&mut out, state).expect("the state serialises");
    out
}

/// The state in a snapshot written by this or an older version, with its
/// derived indexes rebuilt.
pub fn decode_state(index: u64, data: &[u8]) -> Result<State, Decode> {
    let body = payload(data, || format!("the snapshot at index {index}"))?;
    let mut state: State =
        serde_json::from_slice(body).map_err(|e| Decode::Malformed(e.to_string()))?;
    state.reindex();
    Ok(state)
}

fn header(capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    out.push(MAGIC);
    out.push(VERSION);
    out
}

/// The serialised body after the version marker. Versions 1 and 2 share a
/// body encoding (the state's types read version 1's JSON, which the
/// fixtures under `testdata/log/v1` prove); a version that changes the
/// body adds its reader here.
fn payload(data: &[u8], what: impl Fn() -> String) -> Result<&[u8], Decode> {
    match data {
        [MAGIC, version, body @ ..] if *version <= VERSION && *version >= 2 => Ok(body),
        [MAGIC, version, ..] if *version > VERSION => Err(Decode::TooNew {
            what: what(),
            version: *version,
        }),
        [MAGIC, version, ..] => Err(Decode::Malformed(format!(
            "{} names log format version {version}, which never existed",
            what()
        ))),
        [MAGIC] => Err(Decode::Malformed(format!("{} is cut short", what()))),
        // Version 1: bare JSON.
        _ => Ok(data),
    }
}

#[cfg(test)]
#[path = "format_tests.rs"]
pub(crate) mod tests;
