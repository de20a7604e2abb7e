//! The agent's audit log (`--audit-log`): one JSON line per exec, cp and
//! commit session — which user the controller vouched for, on which job's
//! container, and whether it started. The controller's audit log has the
//! same requests; this one is what the host itself saw. Written by
//! `berth_proto::audit::AuditLog`, outcomes named as the controller's are.

use std::path::Path;

use berth_proto::audit::{code_name, AuditLog};

#[derive(Debug)]
pub struct Audit(AuditLog);

impl Audit {
    pub fn open(path: &Path) -> std::io::Result<Audit> {
        AuditLog::open(path).map(Audit)
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
        let ts_ms = crate::now_ms();
        let (code, message) = match outcome {
            Ok(_) => (tonic::Code::Ok, ""),
            Err(s) => (s.code(), s.message()),
        };
        let line = serde_json::json!({
            "ts_ms": ts_ms,
            "what": what,
            "requested_by": requested_by,
            "job": job,
            "outcome": code_name(code),
            "message": message,
        });
        if let Err(e) = self.0.append(&line) {
            tracing::error!(error = %e, "could not write the audit log");
        }
    }
}
