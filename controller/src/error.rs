//! The controller's one error type, and how it maps onto gRPC: a status code
//! and a message for people, and a `google.rpc.ErrorInfo` in the status
//! details whose `reason` programs match on (the list is in
//! `proto/berth/v1/jobs.proto`).

use std::collections::HashMap;

use tonic_types::{ErrorDetails, StatusExt};

use crate::state::Rejection;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    NotFound(String),
    /// A refusal with a reason of its own (no host fits, over quota...).
    #[error("{message}")]
    Refused { reason: Reason, message: String },
    #[error("{0}")]
    Rejected(#[from] Rejection),
    #[error("storage: {0}")]
    Storage(String),
    #[error("agent unreachable: {0}")]
    Agent(String),
    #[error("{}", match leader { Some(a) => format!("this controller is not the leader; the leader is {a}"), None => "no leader is elected right now; retry in a moment".to_string() })]
    NotLeader { leader: Option<String> },
    #[error("{0}")]
    Unavailable(String),
    /// Certificates, keys and tokens that cannot be made, read or used.
    #[error("tls: {0}")]
    Tls(#[from] berth_proto::Error),
}

/// Why a request was refused, for programs (`ErrorInfo.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No host could ever run the job: GPU count, model, memory, labels,
    /// gang size.
    NoHostFits,
    /// The job needs more GPUs at once than its user's quota allows.
    QuotaExceeded,
    /// The cluster has no nodes yet.
    NoNodes,
    /// No host holds the image (and no registry is assumed).
    ImageNotFound,
    JobNotFound,
    NodeNotFound,
    /// The job has already finished.
    JobFinished,
    /// The mount and privilege policy forbids what the job asks.
    PolicyDenied,
    /// The user has as many jobs queued as one may.
    TooManyQueued,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NoHostFits => "NO_HOST_FITS",
            Reason::QuotaExceeded => "QUOTA_EXCEEDED",
            Reason::NoNodes => "NO_NODES",
            Reason::ImageNotFound => "IMAGE_NOT_FOUND",
            Reason::JobNotFound => "JOB_NOT_FOUND",
            Reason::NodeNotFound => "NODE_NOT_FOUND",
            Reason::JobFinished => "JOB_FINISHED",
            Reason::PolicyDenied => "POLICY_DENIED",
            Reason::TooManyQueued => "TOO_MANY_QUEUED",
        }
    }

    fn code(self) -> tonic::Code {
        match self {
            Reason::JobNotFound | Reason::NodeNotFound => tonic::Code::NotFound,
            Reason::PolicyDenied => tonic::Code::PermissionDenied,
            Reason::TooManyQueued => tonic::Code::ResourceExhausted,
            Reason::NoHostFits
            | Reason::QuotaExceeded
            | Reason::NoNodes
            | Reason::ImageNotFound
            | Reason::JobFinished => tonic::Code::FailedPrecondition,
        }
    }
}

impl Error {
    pub fn refused(reason: Reason, message: impl Into<String>) -> Error {
        Error::Refused {
            reason,
            message: message.into(),
        }
    }

    /// The machine-readable reason (`ErrorInfo.reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidArgument(_) => "INVALID_ARGUMENT",
            Error::FailedPrecondition(_) => "FAILED_PRECONDITION",
            Error::NotFound(_) => "NOT_FOUND",
            Error::Refused { reason, .. } => reason.as_str(),
            Error::Rejected(r) => match r {
                Rejection::NoSuchJob(_) => "JOB_NOT_FOUND",
                Rejection::NoSuchNode(_) => "NODE_NOT_FOUND",
                Rejection::NameInUse(..) => "NAME_IN_USE",
                Rejection::DuplicateId(_) => "ALREADY_EXISTS",
                Rejection::BadTransition(..) => "BAD_STATE",
                Rejection::BadPlacement { .. } => "BAD_PLACEMENT",
                Rejection::BadUpdate { .. } | Rejection::Malformed(_) => "INVALID_ARGUMENT",
                Rejection::TokenUsed(_) => "TOKEN_USED",
            },
            Error::Storage(_) => "STORAGE",
            Error::Agent(_) => "AGENT_UNREACHABLE",
            Error::NotLeader { leader: Some(_) } => "NOT_LEADER",
            Error::NotLeader { leader: None } => "NO_LEADER",
            Error::Unavailable(_) => "UNAVAILABLE",
            Error::Tls(_) => "TLS",
        }
    }

    fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::NotFound(_) | Error::Rejected(Rejection::NoSuchJob(_)) => Code::NotFound,
            Error::Refused { reason, .. } => reason.code(),
            Error::Rejected(_) => Code::FailedPrecondition,
            Error::Storage(_) | Error::Tls(_) => Code::Internal,
            Error::Agent(_) | Error::Unavailable(_) | Error::NotLeader { .. } => Code::Unavailable,
        }
    }
}

/// gRPC metadata key naming the leader's address on a not-leader answer.
pub const LEADER_HEADER: &str = "berth-leader";

/// `ErrorInfo.domain` of every error the controller returns.
pub const ERROR_DOMAIN: &str = "berth.v1";

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Error::Storage(e.to_string())
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        let (code, reason, msg) = (e.code(), e.reason(), e.to_string());
        let mut info = HashMap::new();
        let mut metadata = tonic::metadata::MetadataMap::new();
        if let Error::NotLeader {
            leader: Some(addr), ..
        } = &e
        {
            info.insert("leader".to_string(), addr.clone());
            // The header too: clients older than ErrorInfo read it.
            if let Ok(v) = addr.parse() {
                metadata.insert(LEADER_HEADER, v);
            }
        }
        let details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, info);
        tonic::Status::with_error_details_and_metadata(code, msg, details, metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_a_reason_and_the_leader() {
        let s = tonic::Status::from(Error::NotLeader {
            leader: Some("10.0.0.2:7450".into()),
        });
        assert_eq!(s.code(), tonic::Code::Unavailable);
        let info = s.get_details_error_info().expect("error info");
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("NOT_LEADER", ERROR_DOMAIN)
        );
        assert_eq!(info.metadata["leader"], "10.0.0.2:7450");
        assert_eq!(s.metadata().get(LEADER_HEADER).unwrap(), "10.0.0.2:7450");
        assert!(s.message().contains("the leader is 10.0.0.2:7450"));

        let s = tonic::Status::from(Error::refused(Reason::NoHostFits, "no host has 9 GPUs"));
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert_eq!(s.get_details_error_info().unwrap().reason, "NO_HOST_FITS");
        assert_eq!(s.message(), "no host has 9 GPUs");

        let s = tonic::Status::from(Error::Rejected(Rejection::NoSuchJob("x".into())));
        assert_eq!(s.code(), tonic::Code::NotFound);
        assert_eq!(s.get_details_error_info().unwrap().reason, "JOB_NOT_FOUND");
    }
}
