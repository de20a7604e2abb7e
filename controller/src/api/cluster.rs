//! `berth.v1.NodeService`, `ImageService`, `EventService`.

use std::pin::Pin;
use std::sync::Arc;

use berth_proto::v1::event_service_server::EventService;
use berth_proto::v1::image_service_server::ImageService;
use berth_proto::v1::node_service_server::NodeService;
use berth_proto::v1::*;
use futures::{Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::core::Controller;

pub struct Cluster(pub Arc<Controller>);

#[tonic::async_trait]
impl NodeService for Cluster {
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

#[tonic::async_trait]
impl ImageService for Cluster {
    async fn list_images(
        &self,
        _: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        let names: Vec<String> = self.0.read(|s| s.nodes.keys().cloned().collect());
        let nodes = names
            .into_iter()
            .map(|node| NodeImages {
                images: self
                    .0
                    .telemetry(&node)
                    .map(|t| t.report.images)
                    .unwrap_or_default(),
                node,
            })
            .collect();
        Ok(Response::new(ListImagesResponse { nodes }))
    }

    type PushImageStream = Pin<Box<dyn Stream<Item = Result<PushProgress, Status>> + Send>>;

    async fn push_image(
        &self,
        req: Request<PushImageRequest>,
    ) -> Result<Response<Self::PushImageStream>, Status> {
        self.0.ensure_leader()?;
        let req = req.into_inner();
        let plan = self.0.plan_push(&req.image, &req.to, req.all)?;
        tracing::info!(image = %plan.image, targets = plan.targets.len(), sources = plan.sources.len(), "pushing image");
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(crate::images::run(plan, tx));
        let out = async_stream::stream! {
            while let Some(p) = rx.recv().await {
                yield Ok(p);
            }
        };
        Ok(Response::new(Box::pin(out)))
    }

    type SaveImageStream = Pin<Box<dyn Stream<Item = Result<ImageChunk, Status>> + Send>>;

    async fn save_image(
        &self,
        req: Request<SaveImageRequest>,
    ) -> Result<Response<Self::SaveImageStream>, Status> {
        let req = req.into_inner();
        let chunks = self.0.save_image(&req.image, &req.node).await?;
        Ok(Response::new(Box::pin(chunks)))
    }

    async fn load_image(
        &self,
        req: Request<tonic::Streaming<ImageUpload>>,
    ) -> Result<Response<LoadImageResponse>, Status> {
        let mut uploads = req.into_inner();
        let first = uploads
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("an upload starts with the target node"))?;
        let node = first.node.clone();
        if node.is_empty() {
            return Err(Status::invalid_argument("say which node: --to HOST"));
        }
        let chunks = futures::stream::iter(first.chunk)
            .chain(super::rest(uploads).filter_map(|u| std::future::ready(u.chunk)));
        let r = self
            .0
            .load_image(&node, first.archive_bytes, chunks)
            .await?;
        Ok(Response::new(LoadImageResponse {
            node,
            loaded: r.loaded,
            archive_bytes: r.archive_bytes,
        }))
    }

    async fn remove_image(
        &self,
        req: Request<RemoveImagesRequest>,
    ) -> Result<Response<RemoveImagesResponse>, Status> {
        self.0.ensure_leader()?;
        let req = req.into_inner();
        let nodes = self
            .0
            .remove_image(&req.image, &req.nodes, req.force)
            .await?;
        Ok(Response::new(RemoveImagesResponse { nodes }))
    }

    async fn gc_images(&self, req: Request<GcRequest>) -> Result<Response<GcResponse>, Status> {
        self.0.ensure_leader()?;
        let req = req.into_inner();
        let nodes = self
            .0
            .gc_images(&req.nodes, req.target_free_percent, req.dry_run)
            .await?;
        Ok(Response::new(GcResponse { nodes }))
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<Event, Status>> + Send>>;

#[tonic::async_trait]
impl EventService for Cluster {
    type WatchStream = EventStream;

    async fn watch(&self, req: Request<WatchRequest>) -> Result<Response<EventStream>, Status> {
        self.0.ensure_leader()?;
        let filter = req.into_inner().job;
        let job_id = if filter.is_empty() {
            None
        } else {
            Some(self.0.resolve(&filter)?.id)
        };
        let mut rx = self.0.subscribe_events();
        let out = async_stream::stream! {
            loop {
                match rx.recv().await {
                    Ok(ev) => {
                        let keep = match (&job_id, &ev.kind) {
                            (None, _) => true,
                            (Some(id), Some(event::Kind::Job(j))) => &j.id == id,
                            _ => false,
                        };
                        if keep {
                            yield Ok(ev);
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        yield Err(Status::data_loss(format!("watcher fell {n} events behind; re-read state and watch again")));
                        break;
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        };
        Ok(Response::new(Box::pin(out)))
    }
}
