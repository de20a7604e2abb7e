//! The audit log: one JSON line per mutating request — who, from where,
//! what, and the outcome (denials included) — appended to `--audit-log`.
//! Written by the guard after the handler answered, so the outcome is the
//! one the caller saw.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

#[derive(Debug)]
pub struct Audit {
    file: Mutex<std::fs::File>,
}

/// One record.
#[derive(Debug, serde::Serialize)]
pub struct Record<'a> {
    pub ts_ms: i64,
    /// "user", "node", "controller", or "" when unauthenticated.
    pub kind: &'a str,
    pub name: &'a str,
    pub role: &'a str,
    /// The peer's address.
    pub from: &'a str,
    /// The full gRPC method.
    pub method: &'a str,
    /// "OK" or the gRPC code's name.
    pub outcome: &'a str,
    /// The error message, if any.
    pub message: &'a str,
}

impl Audit {
    pub fn open(path: &Path) -> std::io::Result<Audit> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        Ok(Audit {
            file: Mutex::new(file),
        })
    }

    pub fn write(&self, r: &Record<'_>) {
        let Ok(mut line) = serde_json::to_vec(r) else {
            return;
        };
        line.push(b'\n');
        // One write per line on an O_APPEND file: lines never interleave.
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.write_all(&line) {
            tracing::error!(error = %e, "could not write the audit log");
        }
    }
}
