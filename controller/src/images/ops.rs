//! `berth image save|load|rm|gc`, proxied to the agents, and the leader's
//! automatic image GC when a host's disk passes its high-water mark.

use std::time::Duration;

use berth_proto::image_ref;
use berth_proto::v1::{
    GcImagesRequest, GcImagesResult, ImageChunk, LoadImageResult, NodeGc, NodeOutcome,
    RemoveImageRequest,
};
use futures::Stream;

use super::{agent_client, held, sources};
use crate::core::Controller;
use crate::{Error, Result};

/// When image GC runs by itself: a host whose Docker disk is more than
/// `high_percent` used is brought back to `low_percent` (kubelet's
/// defaults), checked every `every`. `high_percent` 100 turns it off.
#[derive(Debug, Clone, Copy)]
pub struct ImageGc {
    pub high_percent: u32,
    pub low_percent: u32,
    pub every: Duration,
}

impl Default for ImageGc {
    fn default() -> Self {
        ImageGc {
            high_percent: 85,
            low_percent: 80,
            every: Duration::from_secs(30),
        }
    }
}

/// Bytes to have free so that at most `used_percent` of `total` is used.
fn free_target(total: u64, used_percent: u32) -> u64 {
    total / 100 * u64::from(100 - used_percent.min(100))
}

impl Controller {
    /// The agent address of `node` if it is ready, else why not.
    fn ready_agent(&self, node: &str) -> Result<String> {
        let addr = self
            .read(|s| s.nodes.get(node).map(|n| n.agent_addr.clone()))
            .ok_or_else(|| {
                Error::NotFound(format!("no node named {node}; `berth nodes` lists them"))
            })?;
        if !self.node_ready(node) {
            return Err(Error::FailedPrecondition(format!(
                "node {node} is down (its agent is not reporting)"
            )));
        }
        Ok(addr)
    }

    fn ready_nodes(&self) -> Vec<String> {
        let names: Vec<String> = self.read(|s| s.nodes.keys().cloned().collect());
        names.into_iter().filter(|n| self.node_ready(n)).collect()
    }

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
            holder.ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "no ready host has {image}: `berth images` lists what each host holds"
                ))
            })?
        } else {
            (node.to_string(), self.ready_agent(node)?)
        };
        tracing::info!(%image, %node, "saving image for a client");
        let stream = agent_client(&node, &addr)
            .await?
            .export_image(berth_proto::v1::ExportImageRequest {
                image: image.to_string(),
                compress: true,
                // A file for anywhere: every layer.
                have_layers: Vec::new(),
            })
            .await
            .map_err(|e| Error::FailedPrecondition(format!("{node}: {}", e.message())))?;
        Ok(stream.into_inner())
    }

    /// `docker load` onto `node` of an archive of `size` bytes. Refused
    /// before anything is sent when the node lacks the disk for it.
    pub async fn load_image(
        &self,
        node: &str,
        size: u64,
        chunks: impl Stream<Item = ImageChunk> + Send + 'static,
    ) -> Result<LoadImageResult> {
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
        let r = agent_client(node, &addr)
            .await?
            .load_image(chunks)
            .await
            .map_err(|e| Error::FailedPrecondition(format!("{node}: {}", e.message())))?;
        Ok(r.into_inner())
    }

    /// Image references that live or queued jobs name.
    pub fn needed_images(&self) -> Vec<String> {
        let mut v: Vec<String> = self.read(|s| {
            s.jobs
                .values()
                .filter(|j| j.state.is_live())
                .map(|j| image_ref::normalize(&j.spec.image))
                .collect()
        });
        v.sort();
        v.dedup();
        v
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
        let needed = self.needed_images();
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
                agent_client(&node, &addr)
                    .await?
                    .remove_image(RemoveImageRequest {
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

    /// Image GC on `nodes` (every ready node when empty), to
    /// `target_free_percent` free (every candidate when 0).
    pub async fn gc_images(
        &self,
        nodes: &[String],
        target_free_percent: u32,
        dry_run: bool,
    ) -> Result<Vec<NodeGc>> {
        if target_free_percent > 100 {
            return Err(Error::InvalidArgument(
                "--target is a percentage of the disk to have free (0-100)".into(),
            ));
        }
        let targets = if nodes.is_empty() {
            self.ready_nodes()
        } else {
            nodes.to_vec()
        };
        let keep = self.needed_images();
        let mut out = Vec::new();
        for node in targets {
            let free_target_bytes = match target_free_percent {
                0 => 0,
                p => self
                    .telemetry(&node)
                    .and_then(|t| t.report.disk)
                    .map_or(0, |d| free_target(d.total_bytes, 100 - p)),
            };
            let r = self.gc_node(&node, &keep, free_target_bytes, dry_run).await;
            out.push(match r {
                Ok(result) => NodeGc {
                    node,
                    result: Some(result),
                    error: String::new(),
                },
                Err(e) => NodeGc {
                    node,
                    result: None,
                    error: e.to_string(),
                },
            });
        }
        Ok(out)
    }

    async fn gc_node(
        &self,
        node: &str,
        keep: &[String],
        free_target_bytes: u64,
        dry_run: bool,
    ) -> Result<GcImagesResult> {
        let addr = self.ready_agent(node)?;
        let r = agent_client(node, &addr)
            .await?
            .gc_images(GcImagesRequest {
                keep: keep.to_vec(),
                free_target_bytes,
                dry_run,
            })
            .await
            .map_err(|e| Error::FailedPrecondition(e.message().to_string()))?;
        Ok(r.into_inner())
    }

    /// On the leader: GC every ready node whose Docker disk is past the
    /// high-water mark, down to the low one.
    pub async fn auto_gc_once(&self, cfg: ImageGc) {
        if !self.is_leader() || cfg.high_percent >= 100 {
            return;
        }
        let mut keep: Option<Vec<String>> = None;
        for node in self.ready_nodes() {
            let Some(disk) = self.telemetry(&node).and_then(|t| t.report.disk) else {
                continue;
            };
            if disk.total_bytes == 0 {
                continue;
            }
            let used = disk.total_bytes.saturating_sub(disk.free_bytes);
            if used * 100 <= disk.total_bytes * u64::from(cfg.high_percent) {
                continue;
            }
            let keep = keep.get_or_insert_with(|| self.needed_images());
            let target = free_target(disk.total_bytes, cfg.low_percent);
            match self.gc_node(&node, keep, target, false).await {
                Ok(r) => tracing::info!(
                    %node,
                    removed = r.removed.len(),
                    freed_mib = r.freed_bytes >> 20,
                    free_mib = r.free_bytes_after >> 20,
                    "disk past {}%: image gc",
                    cfg.high_percent
                ),
                Err(e) => tracing::warn!(%node, error = %e, "image gc failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_targets_follow_the_water_marks() {
        assert_eq!(free_target(1000, 80), 200);
        assert_eq!(free_target(1000, 100), 0);
        assert_eq!(free_target(1000, 0), 1000);
    }
}
