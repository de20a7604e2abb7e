//! `berth image save|load|rm`, proxied to the agents.

use berth_proto::image_ref;
use berth_proto::internal::v1::{DeleteImageRequest, ExportImageRequest, ImportImageResponse};
use berth_proto::v1::{ImageChunk, NodeOutcome};
use futures::Stream;

use super::plan::{held, no_holder, sources};
use crate::core::{agent_client, Controller};
use crate::leader::needed_images;
use crate::{Error, Result};

impl Controller {
    /// `docker save` of `image` from `node`, or from the best ready holder.
    pub async fn save_image(
        &self,
        image: &str,
        node: &str,
    ) -> Result<tonic::Streaming<ImageChunk>> {
        let (node, addr) = if node.is_empty() {
            let holder = self.with_facts(|facts| {
                let (addrs, _) = sources(facts, "", image);
                let first = addrs.first()?;
                facts
                    .iter()
                    .find(|f| f.addr == first)
                    .map(|f| (f.name.to_string(), first.clone()))
            });
            holder.ok_or_else(|| no_holder(image))?
        } else {
            (node.to_string(), self.ready_agent(node)?)
        };
        tracing::info!(%image, %node, "saving image for a client");
        let stream = agent_client(&self.tls, &node, &addr)
            .await?
            .export_image(ExportImageRequest {
                image: image.to_string(),
                compress: true,
                // A file for anywhere: every layer.
                have_layers: Vec::new(),
            })
            .await
            .map_err(|e| Error::FailedPrecondition(format!("{node}: {}", e.message())))?;
        Ok(stream.into_inner())
    }

    /// `docker load` onto `node` (empty: the host `load_host` picks) of an
    /// archive of `size` bytes (0: unknown). Refused before anything is
    /// sent when the node lacks the disk for it. Answers once the node's
    /// report lists what was loaded, so the next command sees it. Returns
    /// the node too.
    pub async fn load_image(
        &self,
        node: &str,
        size: u64,
        chunks: impl Stream<Item = ImageChunk> + Send + 'static,
    ) -> Result<(String, ImportImageResponse)> {
        let node = if node.is_empty() {
            self.load_host(size)?
        } else {
            node.to_string()
        };
        let node = node.as_str();
        let addr = self.ready_agent(node)?;
        let free = self
            .telemetry(node)
            .and_then(|t| t.report.disk)
            .map_or(u64::MAX, |d| d.free_bytes);
        if free < size.saturating_mul(2) {
            return Err(Error::FailedPrecondition(format!(
                "not enough disk on {node} for a {} MiB archive: {} MiB free, about {} MiB needed while it loads; nothing was sent — free space (berth image gc --on {node}) or choose another host",
                size >> 20,
                free >> 20,
                size.saturating_mul(2) >> 20
            )));
        }
        tracing::info!(%node, bytes = size, "loading an archive from a client");
        let r = agent_client(&self.tls, node, &addr)
            .await?
            .import_image(chunks)
            .await
            .map_err(|e| Error::FailedPrecondition(format!("{node}: {}", e.message())))?
            .into_inner();
        for name in &r.loaded {
            self.image_seen(node, name).await;
        }
        Ok((node.to_string(), r))
    }

    /// Where `image load` without `--to` goes (see `roomiest_host`).
    fn load_host(&self, size: u64) -> Result<String> {
        self.roomiest_host(&[], size).ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "no ready host has room for a {} MiB archive (twice that while it loads): free space (berth image gc) or name a host with --to HOST",
                size >> 20
            ))
        })
    }

    /// The host a placement would choose for work on images (a load, a
    /// build): ready and not cordoned, with room for twice `bytes`; then
    /// the one holding the most of `images`, the least busy, the one with
    /// the most free disk.
    pub(super) fn roomiest_host(&self, images: &[String], bytes: u64) -> Option<String> {
        let ready = self.ready_nodes();
        let (cordoned, busy): (Vec<String>, Vec<usize>) = self.read(|s| {
            (
                s.cordons.keys().cloned().collect(),
                ready.iter().map(|n| s.live_jobs_on(n)).collect(),
            )
        });
        ready
            .iter()
            .zip(busy)
            .filter(|(n, _)| !cordoned.contains(n))
            .filter_map(|(n, busy)| {
                let report = self.telemetry(n)?.report;
                let free = report.disk.as_ref().map_or(0, |d| d.free_bytes);
                let holds = images.iter().filter(|i| held(&report, i).is_some()).count();
                (free >= bytes.saturating_mul(2)).then_some((
                    std::cmp::Reverse(holds),
                    busy,
                    std::cmp::Reverse(free),
                    n,
                ))
            })
            .min()
            .map(|(.., n)| n.clone())
    }

    /// Removes `image` from `nodes` (every ready holder when empty).
    /// Refused while a live or queued job needs it.
    pub async fn remove_image(
        &self,
        image: &str,
        nodes: &[String],
        force: bool,
    ) -> Result<Vec<NodeOutcome>> {
        let targets: Vec<String> = if nodes.is_empty() {
            let wanted = image_ref::normalize(image);
            self.ready_nodes()
                .into_iter()
                .filter(|n| {
                    self.telemetry(n)
                        .is_some_and(|t| held(&t.report, &wanted).is_some())
                })
                .collect()
        } else {
            nodes.to_vec()
        };
        if targets.is_empty() {
            return Err(Error::NotFound(format!(
                "no ready host has {image}: `berth images` lists what each host holds"
            )));
        }
        // What the reference means on those hosts (a tag, or an id), so a
        // job naming the same image another way still protects it.
        let needed = needed_images(self);
        let infos: Vec<_> = targets
            .iter()
            .filter_map(|n| self.telemetry(n))
            .flat_map(|t| t.report.images)
            .filter(|i| image_ref::names(&i.id, &i.tags, image))
            .collect();
        let blocking: Vec<&String> = needed
            .iter()
            .filter(|r| {
                image_ref::normalize(image) == **r
                    || infos.iter().any(|i| image_ref::names(&i.id, &i.tags, r))
            })
            .collect();
        if !blocking.is_empty() {
            let jobs: Vec<String> = self.read(|s| {
                s.jobs
                    .values()
                    .filter(|j| {
                        j.state.is_live()
                            && blocking.contains(&&image_ref::normalize(&j.spec.image))
                    })
                    .take(3)
                    .map(|j| j.id.clone())
                    .collect()
            });
            return Err(Error::FailedPrecondition(format!(
                "{image} is needed by live or queued jobs ({}): stop them first (berth stop), nothing was removed",
                jobs.join(", ")
            )));
        }
        let mut out = Vec::new();
        for node in targets {
            let result = async {
                let addr = self.ready_agent(&node)?;
                agent_client(&self.tls, &node, &addr)
                    .await?
                    .delete_image(DeleteImageRequest {
                        image: image.to_string(),
                        force,
                    })
                    .await
                    .map_err(|e| Error::FailedPrecondition(e.message().to_string()))
            }
            .await;
            out.push(NodeOutcome {
                node,
                error: result.err().map(|e| e.to_string()).unwrap_or_default(),
            });
        }
        Ok(out)
    }
}
