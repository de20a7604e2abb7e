//! The agent's audit log (`--audit-log`): one JSON line per exec, cp and
//! commit session — which user the controller vouched for, which
//! controller asked, on which job's container, and whether it started.
//! The controller's audit log has the same requests; this one is what the
//! host itself saw.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

#[derive(Debug)]
pub struct Audit {
    file: Mutex<std::fs::File>,
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

    /// Records a session: `what` (exec, cp-from, cp-to, commit) on `job`
    /// for `requested_by`, and the outcome of starting it.
    pub fn session<T>(
        &self,
        what: &str,
        requested_by: &str,
        job: &str,
        outcome: &Result<T, tonic::Status>,
    ) {
        let ts_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let (code, message) = match outcome {
            Ok(_) => ("OK".to_string(), String::new()),
            Err(s) => (format!("{:?}", s.code()), s.message().to_string()),
        };
        let line = serde_json::json!({
            "ts_ms": ts_ms,
            "what": what,
            "requested_by": requested_by,
            "job": job,
            "outcome": code,
            "message": message,
        });
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = writeln!(f, "{line}") {
            tracing::error!(error = %e, "could not write the audit log");
        }
    }
}
