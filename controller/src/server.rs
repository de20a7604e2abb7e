//! Wiring: the gRPC services on one listener (public API, agents' control
//! plane, raft between controllers, membership), and the leader loop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::v1::control_plane_server::ControlPlaneServer;
use berth_proto::v1::controller_service_server::ControllerServiceServer;
use berth_proto::v1::event_service_server::EventServiceServer;
use berth_proto::v1::image_service_server::ImageServiceServer;
use berth_proto::v1::job_service_server::JobServiceServer;
use berth_proto::v1::node_service_server::NodeServiceServer;
use berth_proto::v1::raft_service_server::RaftServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::api::{cluster::Cluster, control::Control, jobs::Jobs, members::Members};
use crate::core::Controller;
use crate::raft::transport::RaftServer;

/// Serves the controller on `listener` until `shutdown` resolves.
pub async fn run(
    ctl: Arc<Controller>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let leader = tokio::spawn(lead_loop(ctl.clone()));
    let gc = tokio::spawn(gc_loop(ctl.clone()));
    let forget = tokio::spawn(forget_loop(ctl.clone()));
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
    let result = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        // Image save/load pass 2 MiB chunks through: a 64 KiB HTTP/2
        // window would stall each on window updates.
        .initial_stream_window_size(8 << 20)
        .initial_connection_window_size(16 << 20)
        .add_service(JobServiceServer::new(Jobs(ctl.clone())))
        .add_service(NodeServiceServer::new(Cluster(ctl.clone())))
        .add_service(
            ImageServiceServer::new(Cluster(ctl.clone()))
                .max_decoding_message_size(crate::images::MAX_CHUNK_MESSAGE)
                .max_encoding_message_size(crate::images::MAX_CHUNK_MESSAGE),
        )
        .add_service(EventServiceServer::new(Cluster(ctl.clone())))
        .add_service(ControlPlaneServer::new(Control(ctl.clone())))
        .add_service(ControllerServiceServer::new(Members(ctl.clone())))
        .add_service(raft)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(health_service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await;
    leader.abort();
    gc.abort();
    forget.abort();
    result?;
    Ok(())
}

/// The services a controller serves to clients (agents and peers use the
/// control plane and raft services, also advertised).
const PUBLIC: [&str; 5] = [
    "berth.v1.JobService",
    "berth.v1.NodeService",
    "berth.v1.ImageService",
    "berth.v1.EventService",
    "berth.v1.ControllerService",
];

/// Reflection over what this process serves: berth.v1's controller
/// services and the health service (not the agents' data plane).
fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    let mut b = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(berth_proto::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    for s in PUBLIC.iter().chain(&[
        "berth.v1.ControlPlane",
        "berth.v1.RaftService",
        "grpc.health.v1.Health",
    ]) {
        b = b.with_service_name(*s);
    }
    b
}

/// On the leader: places queued jobs whenever something changed, and at least
/// every second (a node coming back or a foreign process leaving changes
/// nothing in the log).
async fn lead_loop(ctl: Arc<Controller>) {
    let mut leader_since: Option<std::time::Instant> = None;
    let mut lost_checked = tokio::time::Instant::now();
    loop {
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            ctl.shared.schedule_needed.notified(),
        )
        .await;
        let started = tokio::time::Instant::now();
        if let Err(e) = ctl.lead_once().await {
            tracing::warn!(error = %e, "leader pass failed");
        }
        leader_since = match (ctl.is_leader(), leader_since) {
            (true, None) => Some(std::time::Instant::now()),
            (true, since) => since,
            (false, _) => None,
        };
        if let Some(since) = leader_since.filter(|_| lost_checked.elapsed() >= LOST_CHECK_EVERY) {
            lost_checked = tokio::time::Instant::now();
            if let Err(e) = ctl.fail_lost_jobs(since).await {
                tracing::warn!(error = %e, "lost-host check failed");
            }
        }
        // Under a burst of submits, one pass every few milliseconds places
        // the whole batch; a pass per applied command would spend the CPU
        // rebuilding snapshots instead of committing.
        tokio::time::sleep_until(started + MIN_PASS_INTERVAL).await;
    }
}

/// On the leader: image GC on hosts whose disk passed the high-water mark.
async fn gc_loop(ctl: Arc<Controller>) {
    // Not at once: a controller that just started has no reports yet.
    let every = ctl.image_gc.every;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tick.tick().await;
        ctl.auto_gc_once(ctl.image_gc).await;
    }
}

/// On the leader: forgets finished jobs past the retention, looking every
/// minute (more often for a short retention).
async fn forget_loop(ctl: Arc<Controller>) {
    let Some(retention) = ctl.job_retention else {
        return;
    };
    let every = (retention / 2).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tick.tick().await;
        if ctl.is_leader() {
            if let Err(e) = ctl.forget_old_jobs(retention).await {
                tracing::warn!(error = %e, "forgetting finished jobs failed");
            }
        }
    }
}

/// How often the leader looks for hosts that stopped reporting.
const LOST_CHECK_EVERY: Duration = Duration::from_secs(1);

/// The shortest time between two scheduling passes.
const MIN_PASS_INTERVAL: Duration = Duration::from_millis(20);
