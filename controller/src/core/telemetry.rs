//! The latest report of each node, kept in memory on the leader only.
//!
//! Why telemetry is not in the log: it changes on every report of every
//! node; logging it would grow the log with cluster size × time. Only facts
//! that change what a job *is* (started, exited, failed) become commands.
//! A new leader rebuilds it from the next reports (agents report every
//! 1–2 s).

use std::time::{Duration, Instant};

use berth_proto::internal::v1::NodeReport;

use super::Controller;
use crate::{Error, Reason, Result};

/// A node that has not reported for this long is DOWN: nothing new lands on
/// it (sooner when `--node-lost-after` is shorter: see `down_after`). Its
/// jobs are lost only after `--node-lost-after`.
pub const NODE_DOWN_AFTER: Duration = Duration::from_secs(15);

/// How long a command that made an image waits for its host to report it.
pub const IMAGE_REPORT_WAIT: Duration = Duration::from_secs(10);

/// How long a node may be silent before it is DOWN, given `node_lost_after`.
pub fn down_after(node_lost_after: Duration) -> Duration {
    NODE_DOWN_AFTER.min(node_lost_after)
}

/// The latest report of a node.
#[derive(Debug, Clone)]
pub struct Telemetry {
    pub at: Instant,
    pub report: NodeReport,
    /// Changes when what the scheduler reads of the report changes (GPU
    /// memory and foreign processes, images, disk).
    pub stamp: u64,
}

impl Telemetry {
    /// The telemetry a new report makes, after `old` (same stamp when the
    /// scheduler would see no difference).
    pub fn next(old: Option<&Telemetry>, report: NodeReport) -> Telemetry {
        let stamp = match old {
            Some(old) if same_for_scheduling(&old.report, &report) => old.stamp,
            Some(old) => old.stamp + 1,
            None => 0,
        };
        Telemetry {
            at: Instant::now(),
            report,
            stamp,
        }
    }
}

impl Controller {
    pub fn telemetry(&self, node: &str) -> Option<Telemetry> {
        self.shared.lock().telemetry.get(node).cloned()
    }

    /// Drops a removed node's last report.
    pub fn forget_telemetry(&self, node: &str) {
        self.shared.lock().telemetry.remove(node);
    }

    /// Whether the node has reported recently.
    pub fn node_ready(&self, node: &str) -> bool {
        self.reported_recently(self.telemetry(node).as_ref())
    }

    /// Whether `t`, a node's last report, is recent enough for it to be up
    /// (for callers that already hold the state lock).
    pub fn reported_recently(&self, t: Option<&Telemetry>) -> bool {
        t.is_some_and(|t| t.at.elapsed() < down_after(self.node_lost_after))
    }

    /// The agent address of `node` if it is ready, else why not.
    pub fn ready_agent(&self, node: &str) -> Result<String> {
        let addr = self
            .read(|s| s.nodes.get(node).map(|n| n.agent_addr.clone()))
            .ok_or_else(|| {
                Error::refused(
                    Reason::NodeNotFound,
                    format!("no node named {node}; `berth nodes` lists them"),
                )
            })?;
        if !self.node_ready(node) {
            return Err(Error::FailedPrecondition(format!(
                "node {node} is down (its agent is not reporting)"
            )));
        }
        Ok(addr)
    }

    /// Waits until `node`'s reports list `image` (a name or an id): read
    /// your writes after a commit, load or push, so the next command (a
    /// run, a save) sees the image. The agent reports at once after such a
    /// change; a host that stays silent past `IMAGE_REPORT_WAIT` is not
    /// waited for longer (the image shows once it reports). Returns
    /// whether the image was seen.
    pub async fn image_seen(&self, node: &str, image: &str) -> bool {
        let deadline = Instant::now() + IMAGE_REPORT_WAIT;
        loop {
            let seen = self.telemetry(node).is_some_and(|t| {
                t.report
                    .images
                    .iter()
                    .any(|i| berth_proto::image_ref::names(&i.id, &i.tags, image))
            });
            if seen {
                return true;
            }
            if Instant::now() >= deadline {
                tracing::warn!(%node, %image, "the host has not reported the new image yet; it shows once it does");
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Names of the nodes reporting now.
    pub fn ready_nodes(&self) -> Vec<String> {
        let names: Vec<String> = self.read(|s| s.nodes.keys().cloned().collect());
        names.into_iter().filter(|n| self.node_ready(n)).collect()
    }
}

/// Whether two reports agree on everything the scheduler reads: per GPU its
/// used memory and foreign processes, the images, the free disk.
fn same_for_scheduling(a: &NodeReport, b: &NodeReport) -> bool {
    a.gpus.len() == b.gpus.len()
        && a.gpus.iter().zip(&b.gpus).all(|(x, y)| {
            x.uuid == y.uuid
                && x.memory_used_bytes == y.memory_used_bytes
                && x.foreign_processes == y.foreign_processes
        })
        && a.images == b.images
        && a.disk.as_ref().map(|d| d.free_bytes) == b.disk.as_ref().map(|d| d.free_bytes)
}
