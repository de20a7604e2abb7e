//! Image GC: least-recently-used images that no live or queued job needs
//! and no container uses, on the hosts named (`berth image gc`), and by
//! itself on hosts whose disk passes the high-water mark (kubelet's
//! 85 % / 80 % by default). The agents choose and remove; the leader says
//! which images to keep and how much to free.

use std::time::Duration;

use berth_proto::image_ref;
use berth_proto::internal::v1::CollectImagesRequest;
use berth_proto::v1::{ImageGcResult, NodeGc};

use super::Leader;
use crate::core::{agent_client, Controller};
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

/// Image references that live or queued jobs name.
pub fn needed_images(ctl: &Controller) -> Vec<String> {
    let mut v: Vec<String> = ctl.read(|s| {
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

impl Leader {
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
            self.ctl.ready_nodes()
        } else {
            nodes.to_vec()
        };
        let keep = needed_images(&self.ctl);
        let mut out = Vec::new();
        for node in targets {
            let free_target_bytes = match target_free_percent {
                0 => 0,
                p => self
                    .ctl
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
    ) -> Result<ImageGcResult> {
        let addr = self.ctl.ready_agent(node)?;
        let r = agent_client(&self.ctl.tls, node, &addr)
            .await?
            .collect_images(CollectImagesRequest {
                keep: keep.to_vec(),
                free_target_bytes,
                dry_run,
            })
            .await
            .map_err(|e| Error::FailedPrecondition(e.message().to_string()))?;
        let r = r.into_inner().result.unwrap_or_default();
        if !dry_run {
            self.ctl
                .metrics
                .image_gc_removals
                .inc_by(r.removed.len() as u64);
        }
        Ok(r)
    }

    /// On the leader: GC every ready node whose Docker disk is past the
    /// high-water mark, down to the low one.
    pub async fn auto_gc_once(&self, cfg: ImageGc) {
        let ctl = &self.ctl;
        if !ctl.is_leader() || cfg.high_percent >= 100 {
            return;
        }
        let mut keep: Option<Vec<String>> = None;
        for node in ctl.ready_nodes() {
            let Some(disk) = ctl.telemetry(&node).and_then(|t| t.report.disk) else {
                continue;
            };
            if disk.total_bytes == 0 {
                continue;
            }
            let used = disk.total_bytes.saturating_sub(disk.free_bytes);
            if used * 100 <= disk.total_bytes * u64::from(cfg.high_percent) {
                continue;
            }
            let keep = keep.get_or_insert_with(|| needed_images(ctl));
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
