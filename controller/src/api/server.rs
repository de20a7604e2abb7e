//! Wiring: the gRPC services on one listener (public API, agents' control
//! plane, raft between controllers, membership), behind mutual TLS and the
//! guard (`auth::guard`), and the leader's loops.

use std::future::Future;
use std::sync::Arc;

use berth_proto::archive::MAX_MESSAGE;
use berth_proto::internal::v1::control_plane_server::ControlPlaneServer;
use berth_proto::internal::v1::raft_service_server::RaftServiceServer;
use berth_proto::v1::access_service_server::AccessServiceServer;
use berth_proto::v1::controller_service_server::ControllerServiceServer;
use berth_proto::v1::event_service_server::EventServiceServer;
use berth_proto::v1::image_service_server::ImageServiceServer;
use berth_proto::v1::job_service_server::JobServiceServer;
use berth_proto::v1::node_service_server::NodeServiceServer;
use berth_proto::v1::usage_service_server::UsageServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use super::auth::guard::{Access, GuardLayer};
use super::{
    access::AccessApi, control::Control, events::Events, images::Images, jobs::Jobs,
    members::Members, nodes::Nodes, usage::UsageApi,
};
use crate::core::Controller;
use crate::leader::{Leader, LeaderConfig};
use crate::raft::transport::RaftServer;

/// Serves the controller on `listener` until `shutdown` resolves.
pub async fn run(
    ctl: Arc<Controller>,
    cfg: LeaderConfig,
    access: Access,
    listener: TcpListener,
    web: Option<super::web::Web>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let leader = Leader::new(ctl.clone(), cfg);
    let mut loops = leader.spawn();
    if let Some(web) = web {
        // The HTTPS port (metrics, dashboard) lives and dies with the API.
        loops.push(tokio::spawn({
            let (ctl, leader) = (ctl.clone(), leader.clone());
            let hash = access.bootstrap_hash.clone();
            async move {
                if let Err(e) = super::web::serve(ctl, leader, hash, web).await {
                    tracing::error!(error = %e, "the metrics and dashboard port stopped");
                }
            }
        }));
    }
    let raft = RaftServiceServer::new(RaftServer {
        inbox: ctl.raft.inbox.clone(),
        cut: ctl.cut.clone(),
    })
    .max_decoding_message_size(4 << 20);
    // grpcurl and any gRPC client can discover the API from the server
    // itself, and load balancers and scripts can ask the standard health
    // service whether this controller serves (followers do: they redirect).
    let reflection = reflection_builder().build_v1()?;
    // v1alpha too: older clients (grpcio-reflection's Python database) ask it.
    let reflection_alpha = reflection_builder().build_v1alpha()?;
    let (health, health_service) = tonic_health::server::health_reporter();
    for service in PUBLIC {
        health
            .set_service_status(service, tonic_health::ServingStatus::Serving)
            .await;
    }
    // Clients without a certificate may connect (users bring a token);
    // the guard decides what each may call.
    let tls = ctl.tls.server(true)?;
    let access = Arc::new(access);
    let guard = GuardLayer {
        ctl: ctl.clone(),
        access: access.clone(),
    };
    let result = tonic::transport::Server::builder()
        .tls_config(tls)?
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)))
        // One slow or hostile client cannot hold unbounded streams open.
        .max_concurrent_streams(Some(1024))
        .layer(guard)
        // Image save/load pass 2 MiB chunks through: a 64 KiB HTTP/2
        // window would stall each on window updates.
        .initial_stream_window_size(8 << 20)
        .initial_connection_window_size(16 << 20)
        .add_service(JobServiceServer::new(Jobs(
            ctl.clone(),
            leader.clone(),
            access.clone(),
        )))
        .add_service(AccessServiceServer::new(AccessApi(
            ctl.clone(),
            access.clone(),
        )))
        .add_service(NodeServiceServer::new(Nodes(ctl.clone())))
        .add_service(
            ImageServiceServer::new(Images(ctl.clone(), leader.clone()))
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
        .add_service(EventServiceServer::new(Events(ctl.clone())))
        .add_service(UsageServiceServer::new(UsageApi(ctl.clone())))
        .add_service(ControlPlaneServer::new(Control(
            ctl.clone(),
            access.clone(),
        )))
        .add_service(ControllerServiceServer::new(Members(ctl.clone())))
        .add_service(raft)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(health_service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await;
    for l in loops {
        l.abort();
    }
    result?;
    Ok(())
}

/// The services a controller serves to clients: berth.v1, the stable API.
const PUBLIC: [&str; 7] = [
    "berth.v1.JobService",
    "berth.v1.NodeService",
    "berth.v1.ImageService",
    "berth.v1.EventService",
    "berth.v1.ControllerService",
    "berth.v1.AccessService",
    "berth.v1.UsageService",
];

/// Berth's own wiring, served on the same port (agents and peers call it).
const INTERNAL: [&str; 2] = [
    "berth.internal.v1.ControlPlane",
    "berth.internal.v1.RaftService",
];

/// Reflection over what this process serves: the public API, the internal
/// services (listed apart by their package) and the health service — not
/// the agents' data plane, which agents serve.
fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    let mut b = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(berth_proto::ALL_FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    for s in PUBLIC
        .iter()
        .chain(&INTERNAL)
        .chain(&["grpc.health.v1.Health"])
    {
        b = b.with_service_name(*s);
    }
    b
}
