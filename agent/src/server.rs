//! The agent's data plane (`berth.internal.v1.AgentService`), called by
//! controllers (and by other agents, for images).

use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use berth_proto::internal::v1::agent_service_server::{AgentService, AgentServiceServer};
use berth_proto::internal::v1::{
    CollectImagesRequest, CollectImagesResponse, ContainerCommitRequest, ContainerCommitResponse,
    ContainerCopyFromRequest, ContainerCopyToInput, ContainerCopyToResponse, ContainerExecInput,
    ContainerLogChunk, ContainerLogsRequest, ContainerStatRequest, ContainerStatResponse,
    DeleteImageRequest, DeleteImageResponse, ExportImageRequest, FetchImageRequest,
    ImportImageResponse, UpdateContainerRequest, UpdateContainerResponse,
};
use berth_proto::tls::Peer;
use berth_proto::v1::{ImageChunk, ImageGcResult, TransferProgress};
use futures::{Stream, StreamExt};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use crate::agent::Agent;
use crate::images;
use crate::Error;

pub struct DataPlane(pub Arc<Agent>);

/// How long an agent in a fan-out chain waits for its neighbours to connect.
const RELAY_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

type LogStream = Pin<Box<dyn Stream<Item = Result<ContainerLogChunk, Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for DataPlane {
    type ContainerLogsStream = LogStream;

    async fn container_logs(
        &self,
        req: Request<ContainerLogsRequest>,
    ) -> Result<Response<LogStream>, Status> {
        let req = req.into_inner();
        let id =
            crate::exec::berth_container(&self.0, &req.container_id, &req.job_id, false).await?;
        let out = self.0.runtime.logs(&id, req.follow, req.tail).map(|item| {
            item.map(|(stream, data)| ContainerLogChunk { stream, data })
                .map_err(Status::from)
        });
        Ok(Response::new(Box::pin(out)))
    }

    type BuildImageStream = crate::build::ProgressStream;

    /// Controllers only: a build runs what the Dockerfile says on this
    /// host, which only a controller that checked it may ask.
    async fn build_image(
        &self,
        req: Request<tonic::Streaming<berth_proto::v1::BuildUpload>>,
    ) -> Result<Response<Self::BuildImageStream>, Status> {
        let peer = req
            .peer_certs()
            .and_then(|c| c.first().and_then(|leaf| Peer::from_der(leaf)));
        if !matches!(peer, Some(Peer::Controller(_))) {
            return Err(Status::permission_denied(
                "only a controller may start a build here (rule: agent.build-by-controller)",
            ));
        }
        Ok(Response::new(
            crate::build::run(self.0.clone(), req.into_inner()).await?,
        ))
    }

    type ExecStream = crate::exec::OutputStream;

    async fn exec(
        &self,
        req: Request<tonic::Streaming<ContainerExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        Ok(Response::new(
            crate::exec::run(&self.0, req.into_inner()).await?,
        ))
    }

    async fn stat_path(
        &self,
        req: Request<ContainerStatRequest>,
    ) -> Result<Response<ContainerStatResponse>, Status> {
        Ok(Response::new(
            crate::files::stat(&self.0, req.into_inner()).await?,
        ))
    }

    type CopyFromStream = crate::files::ChunkStream;

    async fn copy_from(
        &self,
        req: Request<ContainerCopyFromRequest>,
    ) -> Result<Response<Self::CopyFromStream>, Status> {
        Ok(Response::new(
            crate::files::copy_from(&self.0, req.into_inner()).await?,
        ))
    }

    async fn copy_to(
        &self,
        req: Request<tonic::Streaming<ContainerCopyToInput>>,
    ) -> Result<Response<ContainerCopyToResponse>, Status> {
        crate::files::copy_to(&self.0, req.into_inner()).await?;
        Ok(Response::new(ContainerCopyToResponse {}))
    }

    async fn commit(
        &self,
        req: Request<ContainerCommitRequest>,
    ) -> Result<Response<ContainerCommitResponse>, Status> {
        let r = crate::files::commit(&self.0, req.into_inner()).await?;
        // The controller answers the commit once a report lists the image.
        self.0.report_now.notify_one();
        Ok(Response::new(r))
    }

    async fn update_container(
        &self,
        req: Request<UpdateContainerRequest>,
    ) -> Result<Response<UpdateContainerResponse>, Status> {
        let req = req.into_inner();
        let container =
            crate::exec::berth_container(&self.0, &req.container_id, &req.job_id, false).await?;
        tracing::info!(job = %req.job_id, memory = req.memory_bytes, nano_cpus = req.nano_cpus, "updating limits");
        // Marked before the daemon is asked, so no reconcile pass in
        // between puts the old limits back.
        let marks = &self.0.updated_at;
        let now = std::time::Instant::now();
        marks.lock().unwrap().insert(container.clone(), now);
        let result = self
            .0
            .runtime
            .update_limits(&container, req.memory_bytes, req.nano_cpus)
            .await;
        if result.is_err() {
            marks.lock().unwrap().remove(&container);
        }
        result?;
        Ok(Response::new(UpdateContainerResponse {}))
    }

    type ExportImageStream = Pin<Box<dyn Stream<Item = Result<ImageChunk, Status>> + Send>>;

    async fn export_image(
        &self,
        req: Request<ExportImageRequest>,
    ) -> Result<Response<Self::ExportImageStream>, Status> {
        let req = req.into_inner();
        if self.0.runtime.image(&req.image).await?.is_none() {
            // Not loaded here (yet): perhaps being received, to pass on.
            if let Some(feed) = self.0.relays.subscribe(&req.image, RELAY_PATIENCE).await {
                tracing::info!(image = %req.image, "relaying image as it arrives");
                let out = tokio_stream::wrappers::ReceiverStream::new(feed)
                    .map(|r| r.map_err(Status::unavailable));
                return Ok(Response::new(Box::pin(out)));
            }
        }
        tracing::info!(image = %req.image, "exporting image");
        let busy = Busy::new(self.0.exports.clone());
        let out = images::export(
            self.0.runtime.clone(),
            req.image,
            req.compress,
            req.have_layers,
        );
        Ok(Response::new(Box::pin(out.map(move |r| {
            let _held = &busy; // counted until the stream is dropped
            r.map_err(Status::from)
        }))))
    }

    async fn import_image(
        &self,
        req: Request<tonic::Streaming<ImageChunk>>,
    ) -> Result<Response<ImportImageResponse>, Status> {
        let r = self.load(req.into_inner()).await?;
        self.0.report_now.notify_one();
        Ok(Response::new(r))
    }

    async fn delete_image(
        &self,
        req: Request<DeleteImageRequest>,
    ) -> Result<Response<DeleteImageResponse>, Status> {
        let req = req.into_inner();
        self.0.runtime.remove_image(&req.image, req.force).await?;
        tracing::info!(image = %req.image, force = req.force, "image removed");
        Ok(Response::new(DeleteImageResponse {}))
    }

    async fn collect_images(
        &self,
        req: Request<CollectImagesRequest>,
    ) -> Result<Response<CollectImagesResponse>, Status> {
        Ok(Response::new(CollectImagesResponse {
            result: Some(self.gc(req.into_inner()).await?),
        }))
    }

    type FetchImageStream = Pin<Box<dyn Stream<Item = Result<TransferProgress, Status>> + Send>>;

    async fn fetch_image(
        &self,
        req: Request<FetchImageRequest>,
    ) -> Result<Response<Self::FetchImageStream>, Status> {
        let req = req.into_inner();
        let runtime = self.0.runtime.clone();
        // Refuse before anything starts: the image fits, or nothing happens.
        let disk = runtime.disk().await?;
        images::disk_check(
            disk.free_bytes,
            req.image_size,
            &req.image,
            &disk.docker_root_dir,
        )?;
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let agent = self.0.clone();
        let done = tokio::spawn(async move {
            // Downstream agents must be listening before the first chunk.
            let relay = (req.downstream > 0).then(|| agent.relays.open(&req.image));
            if let Some(r) = &relay {
                r.wait_for(req.downstream as usize, RELAY_PATIENCE).await;
            }
            let opts = agent.cfg.images;
            let r = images::fetch(
                runtime,
                &agent.cfg.tls.get(),
                opts,
                &req.image,
                &req.sources,
                &tx,
                relay,
            )
            .await;
            agent.relays.close(&req.image);
            tracing::info!(image = %req.image, ok = r.is_ok(), "image transfer finished");
            if r.is_ok() {
                agent.report_now.notify_one();
            }
            r
        });
        let out = async_stream::stream! {
            while let Some(p) = rx.recv().await {
                yield Ok(p);
            }
            match done.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => yield Err(Status::from(e)),
                Err(e) => yield Err(Status::internal(format!("transfer task: {e}"))),
            }
        };
        Ok(Response::new(Box::pin(out)))
    }
}

/// One export in flight, counted in the node report while it lives.
struct Busy(Arc<AtomicU32>);

impl Busy {
    fn new(n: Arc<AtomicU32>) -> Busy {
        n.fetch_add(1, Ordering::Relaxed);
        Busy(n)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Image loads, removals and GC: `berth image load|rm|gc`, via the controller.
impl DataPlane {
    async fn load(
        &self,
        chunks: tonic::Streaming<ImageChunk>,
    ) -> Result<ImportImageResponse, Status> {
        let chunks = chunks.map(|r| r.map_err(|e| e.message().to_string()));
        let loaded =
            images::load_verified(self.0.runtime.clone(), chunks, "the client", |_, _| {}).await?;
        tracing::info!(images = ?loaded.names, bytes = loaded.archive_bytes, "archive loaded");
        Ok(ImportImageResponse {
            loaded: loaded.names,
            archive_bytes: loaded.archive_bytes,
        })
    }

    async fn gc(&self, req: CollectImagesRequest) -> Result<ImageGcResult, Status> {
        let runtime = &self.0.runtime;
        let choice = crate::gc::choose(runtime.image_usage().await?, &req.keep);
        let mut out = ImageGcResult {
            kept_in_use: choice.kept_in_use,
            kept_needed: choice.kept_needed,
            ..ImageGcResult::default()
        };
        let mut free = runtime.disk().await?.free_bytes;
        for u in choice.candidates {
            if req.free_target_bytes > 0 && free >= req.free_target_bytes {
                break;
            }
            if !req.dry_run {
                // Tag by tag (the last one deletes it), never forced: a
                // container made since the listing still makes docker refuse.
                let names = if u.image.tags.is_empty() {
                    vec![u.image.id.clone()]
                } else {
                    u.image.tags.clone()
                };
                let mut failed = Vec::new();
                for n in &names {
                    if let Err(e) = runtime.remove_image(n, false).await {
                        failed.push(format!("{n}: {e}"));
                    }
                }
                if !failed.is_empty() {
                    out.errors.extend(failed);
                    continue;
                }
                free = runtime.disk().await?.free_bytes;
            } else {
                free += u.image.size_bytes;
            }
            out.freed_bytes += u.image.size_bytes;
            out.removed.push(u.image);
        }
        out.free_bytes_after = free;
        if !req.dry_run && !out.removed.is_empty() {
            let m = crate::metrics::metrics();
            m.images_removed.inc_by(out.removed.len() as u64);
            m.image_bytes_freed.inc_by(out.freed_bytes);
            tracing::info!(
                removed = out.removed.len(),
                freed = out.freed_bytes,
                "image gc"
            );
        }
        Ok(out)
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::NotFound(m) => Status::not_found(m),
            Error::Transfer(m) => Status::failed_precondition(m),
            Error::Docker(m) => Status::failed_precondition(m),
            other => Status::internal(other.to_string()),
        }
    }
}

/// Only controllers and other agents may call an agent, each with a
/// certificate of the cluster CA (TLS has verified the chain): never a
/// user, whatever their token or certificate.
fn controllers_and_agents(req: Request<()>) -> Result<Request<()>, Status> {
    let peer = req
        .peer_certs()
        .and_then(|c| c.first().and_then(|leaf| Peer::from_der(leaf)));
    match peer {
        Some(Peer::Controller(_) | Peer::Node(_)) => Ok(req),
        Some(other) => Err(Status::permission_denied(format!(
            "an agent serves controllers and other agents only, not {other} (rule: agent.peers-only)"
        ))),
        None => Err(Status::unauthenticated(
            "an agent needs a controller's or node's certificate of this cluster",
        )),
    }
}

/// Serves the data plane on `listener` until the process ends: mutual TLS
/// (a client certificate is required), controllers and agents only.
/// A renewed certificate starts a new generation of the server on the same
/// listener; the old one stops accepting and finishes its streams.
pub async fn serve(agent: Arc<Agent>, listener: TcpListener) -> anyhow::Result<()> {
    let listener = Arc::new(listener);
    let mut generation = agent.cert_generation.subscribe();
    loop {
        let current = *generation.borrow_and_update();
        let mut stop = agent.cert_generation.subscribe();
        let server = serve_once(agent.clone(), listener.clone(), async move {
            let _ = stop.wait_for(|g| *g != current).await;
        });
        let mut running = tokio::spawn(server);
        tokio::select! {
            biased;
            r = generation.changed() => {
                if r.is_err() {
                    return running.await?;
                }
            }
            r = &mut running => {
                // A server told to stop for a new certificate can finish
                // before this loop sees the change: that is no end.
                if *agent.cert_generation.borrow() == current {
                    return r?;
                }
            }
        }
        tracing::info!("serving the data plane with the renewed certificate");
    }
}

async fn serve_once(
    agent: Arc<Agent>,
    listener: Arc<TcpListener>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let tls = agent.cfg.tls.get().server(false)?;
    let service = AgentServiceServer::new(DataPlane(agent))
        .max_encoding_message_size(berth_proto::archive::MAX_MESSAGE)
        .max_decoding_message_size(berth_proto::archive::MAX_MESSAGE);
    let incoming = async_stream::stream! {
        loop {
            yield listener.accept().await.map(|(s, _)| s);
        }
    };
    tonic::transport::Server::builder()
        .tls_config(tls)?
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(20)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)))
        .max_concurrent_streams(Some(1024))
        // Image streams send 2 MiB messages: HTTP/2's default 64 KiB window
        // would stall every chunk on window updates.
        .initial_stream_window_size(berth_proto::archive::WINDOW)
        .initial_connection_window_size(2 * berth_proto::archive::WINDOW)
        .add_service(tonic::service::interceptor::InterceptedService::new(
            service,
            controllers_and_agents,
        ))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    Ok(())
}
