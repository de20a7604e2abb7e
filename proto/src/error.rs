//! The proto crate's one error type: what its codecs and parsers refuse.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A size that does not read (see `size`).
    #[error("{0}")]
    Size(String),
    /// An image chunk that does not encode or decode (see `archive`).
    #[error("{0}")]
    Archive(String),
    /// A certificate, key or CA that cannot be made, read or used (see `tls`).
    #[error("{0}")]
    Tls(String),
}
