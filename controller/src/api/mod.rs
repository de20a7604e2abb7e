//! gRPC handlers. They only adapt: decode → call `Controller` → encode.

pub mod cluster;
pub mod containers;
pub mod control;
pub mod jobs;
pub mod members;
