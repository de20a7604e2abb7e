//! `berth.v1.NodeService`: nodes with their inventory from the state and
//! live numbers from their last report; an admin's cordon, drain and
//! removal (the guard lets only admins call those).

use std::sync::Arc;
use std::time::Duration;

use berth_proto::v1::node_service_server::NodeService;
use berth_proto::v1::*;
use tonic::{Request, Response, Status};

use crate::core::{convert, Controller};
use crate::state::Command;
use crate::{Error, Reason, Result};

/// A drain's deadline when none is given (Nomad's default too).
pub const DEFAULT_DRAIN_DEADLINE: Duration = Duration::from_secs(3600);

pub struct Nodes(pub Arc<Controller>);

impl Nodes {
    fn node(&self, name: &str) -> Result<Node> {
        let t = self.0.telemetry(name);
        let ready = self.0.node_ready(name);
        self.0
            .read(|s| {
                s.nodes
                    .get(name)
                    .map(|n| convert::node(n, t.as_ref(), s, ready))
            })
            .ok_or_else(|| {
                Error::refused(
                    Reason::NodeNotFound,
                    format!("no node named {name:?}; `berth nodes` lists them"),
                )
            })
    }

    /// The node's name, checked to exist (a clear NOT_FOUND, not a refusal
    /// from the log).
    async fn known(&self, name: &str) -> Result<String> {
        self.0.read_barrier().await?;
        let name = name.trim();
        if name.is_empty() {
            return Err(Error::InvalidArgument(
                "name the node (`berth nodes` lists them)".into(),
            ));
        }
        self.node(name)?;
        Ok(name.to_string())
    }

    /// Applies an admin's change to `node`, wakes the scheduler (a cordon
    /// lifted may let a job start), and answers with the node after it.
    async fn change(&self, node: &str, cmd: Command) -> Result<Option<Node>> {
        self.0.propose(cmd).await?;
        self.0.shared.schedule_needed.notify_one();
        self.node(node).map(Some)
    }
}

#[tonic::async_trait]
impl NodeService for Nodes {
    async fn list_nodes(
        &self,
        _: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesResponse>, Status> {
        // The revision first: a node read after it may already show a
        // later change, which a watch from it repeats (never misses).
        let (names, revision): (Vec<String>, u64) = self
            .0
            .read(|s| (s.nodes.keys().cloned().collect(), s.applied_index));
        let nodes = names
            .iter()
            .filter_map(|name| self.node(name).ok())
            .collect();
        Ok(Response::new(ListNodesResponse { nodes, revision }))
    }

    async fn cordon_node(
        &self,
        req: Request<CordonNodeRequest>,
    ) -> Result<Response<CordonNodeResponse>, Status> {
        let req = req.into_inner();
        let node = self.known(&req.node).await?;
        let cmd = if req.cordon {
            Command::Cordon {
                node: node.clone(),
                drain_deadline_ms: None,
                at_ms: convert::now_ms(),
            }
        } else {
            Command::Uncordon { node: node.clone() }
        };
        Ok(Response::new(CordonNodeResponse {
            node: self.change(&node, cmd).await?,
        }))
    }

    async fn drain_node(
        &self,
        req: Request<DrainNodeRequest>,
    ) -> Result<Response<DrainNodeResponse>, Status> {
        let req = req.into_inner();
        let node = self.known(&req.node).await?;
        let deadline = match (req.deadline_seconds, req.force) {
            (_, true) => Duration::ZERO,
            (0, false) => DEFAULT_DRAIN_DEADLINE,
            (s, false) => Duration::from_secs(s),
        };
        if deadline > Duration::from_secs(365 * 24 * 3600) {
            return Err(Error::InvalidArgument(format!(
                "a drain deadline of {} s is more than a year: give a shorter --deadline",
                deadline.as_secs()
            ))
            .into());
        }
        let now = convert::now_ms();
        let cmd = Command::Cordon {
            node: node.clone(),
            drain_deadline_ms: Some(now + deadline.as_millis() as i64),
            at_ms: now,
        };
        Ok(Response::new(DrainNodeResponse {
            node: self.change(&node, cmd).await?,
        }))
    }

    async fn remove_node(
        &self,
        req: Request<RemoveNodeRequest>,
    ) -> Result<Response<RemoveNodeResponse>, Status> {
        let req = req.into_inner();
        let node = self.known(&req.node).await?;
        let live = self.0.read(|s| s.live_jobs_on(&node));
        if !req.force {
            if self.0.node_ready(&node) {
                return Err(Error::FailedPrecondition(format!(
                    "node {node} is up (its agent reports): stop its agent first, or drain it and pass --force"
                ))
                .into());
            }
            if live > 0 {
                return Err(Error::FailedPrecondition(format!(
                    "{live} job(s) still hold resources on {node}: stop them, or pass --force to fail them (those with a restart policy run again elsewhere)"
                ))
                .into());
            }
        }
        let applied = self
            .0
            .propose(Command::RemoveNode {
                node: node.clone(),
                at_ms: convert::now_ms(),
            })
            .await?;
        self.0.forget_telemetry(&node);
        self.0.shared.schedule_needed.notify_one();
        tracing::info!(%node, failed = applied.jobs.len(), "node removed");
        Ok(Response::new(RemoveNodeResponse {
            failed_jobs: applied.jobs,
        }))
    }
}
