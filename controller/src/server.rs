//! Wiring: the gRPC services on one listener, and the scheduling loop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::v1::control_plane_server::ControlPlaneServer;
use berth_proto::v1::event_service_server::EventServiceServer;
use berth_proto::v1::image_service_server::ImageServiceServer;
use berth_proto::v1::job_service_server::JobServiceServer;
use berth_proto::v1::node_service_server::NodeServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::api::{cluster::Cluster, control::Control, jobs::Jobs};
use crate::core::Controller;

/// Serves the controller on `listener` until `shutdown` resolves.
pub async fn run(
    ctl: Arc<Controller>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let scheduler = tokio::spawn(schedule_loop(ctl.clone()));
    let result = tonic::transport::Server::builder()
        .add_service(JobServiceServer::new(Jobs(ctl.clone())))
        .add_service(NodeServiceServer::new(Cluster(ctl.clone())))
        .add_service(ImageServiceServer::new(Cluster(ctl.clone())))
        .add_service(EventServiceServer::new(Cluster(ctl.clone())))
        .add_service(ControlPlaneServer::new(Control(ctl.clone())))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await;
    scheduler.abort();
    result?;
    Ok(())
}

/// Places queued jobs whenever something changed, and at least every second
/// (a node coming back or a foreign process leaving changes nothing in the log).
async fn schedule_loop(ctl: Arc<Controller>) {
    loop {
        let _ = tokio::time::timeout(Duration::from_secs(1), ctl.schedule_needed.notified()).await;
        let c = ctl.clone();
        match tokio::task::spawn_blocking(move || c.schedule_once()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "scheduling pass failed"),
            Err(e) => tracing::error!(error = %e, "scheduling pass panicked"),
        }
    }
}
