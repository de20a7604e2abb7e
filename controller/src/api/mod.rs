//! gRPC handlers. They only adapt: decode → call `Controller` → encode.

pub mod cluster;
pub mod containers;
pub mod control;
pub mod jobs;
pub mod logs;
pub mod members;

use futures::{Stream, StreamExt};

/// The rest of a client's stream, until it ends or breaks: a broken client
/// stream then reads as an early end upstream (an upload without its
/// trailer, which the agent refuses to load).
pub(crate) fn rest<T: Send + 'static>(
    inbound: tonic::Streaming<T>,
) -> impl Stream<Item = T> + Send + 'static {
    inbound
        .take_while(|m| std::future::ready(m.is_ok()))
        .filter_map(|m| std::future::ready(m.ok()))
}
