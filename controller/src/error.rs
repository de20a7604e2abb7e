//! The controller's one error type, and how it maps onto gRPC status codes.

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
}

/// gRPC metadata key naming the leader's address on a not-leader answer.
pub const LEADER_HEADER: &str = "berth-leader";

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Error::Storage(e.to_string())
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        let msg = e.to_string();
        match e {
            Error::InvalidArgument(_) => tonic::Status::invalid_argument(msg),
            Error::FailedPrecondition(_) => tonic::Status::failed_precondition(msg),
            Error::NotFound(_) => tonic::Status::not_found(msg),
            Error::Rejected(Rejection::NoSuchJob(_)) => tonic::Status::not_found(msg),
            Error::Rejected(_) => tonic::Status::failed_precondition(msg),
            Error::Storage(_) => tonic::Status::internal(msg),
            Error::Agent(_) | Error::Unavailable(_) => tonic::Status::unavailable(msg),
            Error::NotLeader { leader } => {
                let mut status = tonic::Status::unavailable(msg);
                if let Some(Ok(v)) = leader.map(|a| a.parse()) {
                    status.metadata_mut().insert(LEADER_HEADER, v);
                }
                status
            }
        }
    }
}
