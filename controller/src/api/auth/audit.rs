//! The audit log: one JSON line per mutating request — who, from where,
//! what, and the outcome (denials included) — appended to `--audit-log`
//! (`berth_proto::audit::AuditLog`). Written by the guard after the handler
//! answered, so the outcome is the one the caller saw.

pub use berth_proto::audit::AuditLog as Audit;

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
    /// The request's id (`x-request-id`), as in the controller's logs.
    pub request_id: &'a str,
}
