//! `berth.v1.ImageService`: images across hosts without a registry.
//!
//! - `plan`: which hosts hold an image, which may receive it, the best
//!   source for a pull (pure, from the nodes' reports).
//! - `push`: the transfers of `berth image push` (a chain of targets; the
//!   bytes go agent to agent, the controller only asks).
//! - `build`: `berth build`, checked here and run by one agent.
//! - `files`: save, load and rm, proxied to agents. GC is the leader's
//!   (`leader::gc`).

mod build;
mod files;
pub mod plan;
mod push;

pub use plan::{find_image, held};

use std::pin::Pin;
use std::sync::Arc;

use berth_proto::v1::image_service_server::ImageService;
use berth_proto::v1::*;
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::core::Controller;
use crate::leader::Leader;

pub struct Images(pub Arc<Controller>, pub Arc<Leader>);

#[tonic::async_trait]
impl ImageService for Images {
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
        tokio::spawn(push::run(self.0.clone(), plan, tx));
        let out = async_stream::stream! {
            while let Some(p) = rx.recv().await {
                yield Ok(p);
            }
        };
        Ok(Response::new(Box::pin(out)))
    }

    type BuildImageStream = build::BuildStream;

    async fn build_image(
        &self,
        req: Request<tonic::Streaming<BuildUpload>>,
    ) -> Result<Response<Self::BuildImageStream>, Status> {
        let who = crate::api::auth::caller(&req)?;
        self.0.ensure_leader()?;
        // RUN steps run as the Dockerfile's USER, root unless it says
        // otherwise: a role the policy keeps from root may not build.
        let role = who.user().map(|(_, r)| r.word()).unwrap_or_default();
        let policy = self.0.read(|s| s.policy_in_force());
        if !policy.privileges.root.iter().any(|r| r == role) {
            return Err(Status::permission_denied(format!(
                "policy rule privileges.root: a build runs its RUN steps as root, which role {role} may not (allowed for: {})",
                policy.privileges.root.join(", ")
            )));
        }
        Ok(Response::new(
            build::run(self.0.clone(), req.into_inner()).await?,
        ))
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
        // No node: the controller picks one, as `docker load` needs none.
        let chunks = futures::stream::iter(first.chunk)
            .chain(super::rest(uploads).filter_map(|u| std::future::ready(u.chunk)));
        let (node, r) = self
            .0
            .load_image(&first.node, first.archive_bytes, chunks)
            .await?;
        Ok(Response::new(LoadImageResponse {
            node,
            loaded: r.loaded,
            archive_bytes: r.archive_bytes,
        }))
    }

    async fn remove_image(
        &self,
        req: Request<RemoveImageRequest>,
    ) -> Result<Response<RemoveImageResponse>, Status> {
        self.0.ensure_leader()?;
        let req = req.into_inner();
        let nodes = self
            .0
            .remove_image(&req.image, &req.nodes, req.force)
            .await?;
        Ok(Response::new(RemoveImageResponse { nodes }))
    }

    async fn gc_images(
        &self,
        req: Request<GcImagesRequest>,
    ) -> Result<Response<GcImagesResponse>, Status> {
        self.0.ensure_leader()?;
        let req = req.into_inner();
        let nodes = self
            .1
            .gc_images(&req.nodes, req.target_free_percent, req.dry_run)
            .await?;
        Ok(Response::new(GcImagesResponse { nodes }))
    }
}
