//! The agent's one error type.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("docker: {0}")]
    Docker(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("GPU: {0}")]
    Gpu(String),
    #[error("controller: {0}")]
    Controller(String),
    #[error("config: {0}")]
    Config(String),
    /// An image transfer failed; the message says where and why.
    #[error("{0}")]
    Transfer(String),
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        Error::Controller(format!("{}: {}", s.code(), s.message()))
    }
}

impl From<tonic::transport::Error> for Error {
    fn from(e: tonic::transport::Error) -> Self {
        Error::Controller(e.to_string())
    }
}

impl From<berth_proto::Error> for Error {
    fn from(e: berth_proto::Error) -> Self {
        match e {
            berth_proto::Error::Size(m) | berth_proto::Error::Tls(m) => Error::Config(m),
            berth_proto::Error::Archive(m) => Error::Transfer(m),
        }
    }
}
