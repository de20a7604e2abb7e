//! The agent's data plane (`berth.v1.AgentService`), called by controllers.

use std::pin::Pin;
use std::sync::Arc;

use berth_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use berth_proto::v1::{ContainerLogsRequest, LogChunkFromAgent};
use futures::{Stream, StreamExt};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

use crate::agent::Agent;
use crate::Error;

pub struct DataPlane(pub Arc<Agent>);

type LogStream = Pin<Box<dyn Stream<Item = Result<LogChunkFromAgent, Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for DataPlane {
    type ContainerLogsStream = LogStream;

    async fn container_logs(
        &self,
        req: Request<ContainerLogsRequest>,
    ) -> Result<Response<LogStream>, Status> {
        let req = req.into_inner();
        let cluster = self.0.cluster_id.lock().unwrap().clone();
        let containers = self.0.runtime.list(&cluster, &self.0.cfg.node).await?;
        let c = containers
            .into_iter()
            .find(|c| c.job_id == req.job_id)
            .ok_or_else(|| {
                Status::not_found(format!("no container for job {} on this node", req.job_id))
            })?;
        let out = self
            .0
            .runtime
            .logs(&c.id, req.follow, req.tail)
            .map(|item| {
                item.map(|(stream, data)| LogChunkFromAgent { stream, data })
                    .map_err(Status::from)
            });
        Ok(Response::new(Box::pin(out)))
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound(m) => Status::not_found(m),
            other => Status::internal(other.to_string()),
        }
    }
}

/// Serves the data plane on `listener` until the process ends.
pub async fn serve(agent: Arc<Agent>, listener: TcpListener) -> anyhow::Result<()> {
    tonic::transport::Server::builder()
        .add_service(AgentServiceServer::new(DataPlane(agent)))
        .serve_with_incoming(TcpListenerStream::new(listener))
        .await?;
    Ok(())
}
