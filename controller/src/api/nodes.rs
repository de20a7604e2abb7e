//! `berth.v1.NodeService`: nodes with their inventory from the state and
//! live numbers from their last report.

use std::sync::Arc;

use berth_proto::v1::node_service_server::NodeService;
use berth_proto::v1::*;
use tonic::{Request, Response, Status};

use crate::core::{convert, Controller};

pub struct Nodes(pub Arc<Controller>);

#[tonic::async_trait]
impl NodeService for Nodes {
    async fn list_nodes(
        &self,
        _: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesResponse>, Status> {
        let names: Vec<String> = self.0.read(|s| s.nodes.keys().cloned().collect());
        let nodes = names
            .iter()
            .filter_map(|name| {
                let t = self.0.telemetry(name);
                let ready = self.0.node_ready(name);
                self.0.read(|s| {
                    s.nodes
                        .get(name)
                        .map(|n| convert::node(n, t.as_ref(), s, ready))
                })
            })
            .collect();
        Ok(Response::new(ListNodesResponse { nodes }))
    }
}
