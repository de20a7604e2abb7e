//! Images across hosts: which hosts hold an image, which may receive it,
//! and the best source for a pull (pure, from the nodes' reports).

use berth_proto::internal::v1::NodeReport;
use berth_proto::v1::ImageInfo;

use crate::core::Controller;
use crate::scheduler::{id_matches, normalize_image};
use crate::{Error, Reason, Result};

/// A push, checked: nothing starts unless every target can take the image.
#[derive(Debug, Clone, PartialEq)]
pub struct PushPlan {
    /// The reference every daemon is asked for (docker's normal form).
    pub image: String,
    pub size: u64,
    /// Agent addresses of ready holders, by node name order.
    pub sources: Vec<String>,
    /// (node, agent address) of each target lacking the image.
    pub targets: Vec<(String, String)>,
}

/// What the plan needs to know of one node.
#[derive(Debug, Clone)]
pub struct NodeFacts<'a> {
    pub name: &'a str,
    pub addr: &'a str,
    pub ready: bool,
    pub report: Option<&'a NodeReport>,
}

/// `image` (normalised: a tag or an id) as this node reported it, if it holds it.
pub fn find_image<'a>(report: &'a NodeReport, image: &str) -> Option<&'a ImageInfo> {
    report
        .images
        .iter()
        .find(|i| i.tags.iter().any(|t| t == image) || id_matches(&i.id, image))
}

/// The size of `image` on this node, if it holds it.
pub fn held(report: &NodeReport, image: &str) -> Option<u64> {
    find_image(report, image).map(|i| i.size_bytes)
}

/// Checks a push of `image` to `to` (node names) or, with `all`, to every
/// ready node lacking it. Pure: the caller gathers `nodes`.
pub fn plan(nodes: &[NodeFacts], image: &str, to: &[String], all: bool) -> Result<PushPlan> {
    let image = normalize_image(image);
    let mut sources = Vec::new();
    let mut size = 0;
    for n in nodes.iter().filter(|n| n.ready) {
        if let Some(s) = n.report.and_then(|r| held(r, &image)) {
            sources.push(n.addr.to_string());
            size = size.max(s);
        }
    }
    if sources.is_empty() {
        return Err(no_holder(&image));
    }
    if to.is_empty() && !all {
        return Err(Error::InvalidArgument(
            "say where to: --to HOST[,HOST...] or --all".into(),
        ));
    }
    let mut targets = Vec::new();
    let wanted: Vec<&NodeFacts> = if all {
        nodes.iter().filter(|n| n.ready).collect()
    } else {
        to.iter()
            .map(|name| {
                let n = nodes.iter().find(|n| n.name == name).ok_or_else(|| {
                    Error::refused(
                        Reason::NodeNotFound,
                        format!("no node named {name}; `berth nodes` lists them"),
                    )
                })?;
                if !n.ready {
                    return Err(Error::FailedPrecondition(format!(
                        "node {name} is down (its agent is not reporting)"
                    )));
                }
                Ok(n)
            })
            .collect::<Result<_>>()?
    };
    let mut short = Vec::new();
    for n in wanted {
        let report = n.report.expect("ready nodes have reported");
        if held(report, &image).is_some() {
            continue;
        }
        let free = report.disk.as_ref().map_or(0, |d| d.free_bytes);
        if free < size.saturating_mul(2) {
            short.push(format!(
                "{} has {} MiB free, needs about {} MiB",
                n.name,
                free >> 20,
                size.saturating_mul(2) >> 20
            ));
            continue;
        }
        targets.push((n.name.to_string(), n.addr.to_string()));
    }
    if !short.is_empty() {
        return Err(Error::FailedPrecondition(format!(
            "not enough disk for {image} ({} MiB): {}; nothing was sent — free space (docker image prune) or choose other hosts",
            size >> 20,
            short.join("; ")
        )));
    }
    Ok(PushPlan {
        image,
        size,
        sources,
        targets,
    })
}

/// No ready host holds `image`.
pub fn no_holder(image: &str) -> Error {
    Error::refused(
        Reason::ImageNotFound,
        format!("no ready host has {image}: `berth images` lists what each host holds"),
    )
}

/// The holders `node` should read `image` from, best first: ready, not
/// `node` itself, fewest transfers already going out (so concurrent pulls
/// spread over the holders), then by name. Returns them with the image's size.
pub fn sources(nodes: &[NodeFacts], node: &str, image: &str) -> (Vec<String>, u64) {
    let image = normalize_image(image);
    let mut holders: Vec<(u32, &str, &str, u64)> = nodes
        .iter()
        .filter(|n| n.ready && n.name != node)
        .filter_map(|n| {
            let r = n.report?;
            held(r, &image).map(|size| (r.exports_in_flight, n.name, n.addr, size))
        })
        .collect();
    holders.sort();
    let size = holders.iter().map(|h| h.3).max().unwrap_or(0);
    (holders.into_iter().map(|h| h.2.to_string()).collect(), size)
}

impl Controller {
    /// Plans a push from the current reports.
    pub fn plan_push(&self, image: &str, to: &[String], all: bool) -> Result<PushPlan> {
        self.with_facts(|facts| plan(facts, image, to, all))
    }

    /// Where `node` should read `image` from (see `sources`).
    pub fn image_sources(&self, node: &str, image: &str) -> (Vec<String>, u64) {
        self.with_facts(|facts| sources(facts, node, image))
    }

    /// The transfer a PULLING job waits for, as its node last reported it.
    pub fn pull_of(&self, job: &berth_proto::v1::Job) -> Option<berth_proto::v1::ImagePull> {
        if job.state != berth_proto::v1::JobState::Pulling as i32 {
            return None;
        }
        let t = self.telemetry(&job.node)?;
        t.report
            .pulls
            .into_iter()
            .find(|p| p.job_ids.iter().any(|j| j == &job.id))
    }

    /// Every node's facts, from the state and the last reports.
    pub(super) fn with_facts<R>(&self, f: impl FnOnce(&[NodeFacts]) -> R) -> R {
        let names: Vec<(String, String)> = self.read(|s| {
            s.nodes
                .values()
                .map(|n| (n.name.clone(), n.agent_addr.clone()))
                .collect()
        });
        let reports: Vec<_> = names
            .iter()
            .map(|(n, _)| (self.node_ready(n), self.telemetry(n).map(|t| t.report)))
            .collect();
        let facts: Vec<NodeFacts> = names
            .iter()
            .zip(&reports)
            .map(|((name, addr), (ready, report))| NodeFacts {
                name,
                addr,
                ready: *ready,
                report: report.as_ref(),
            })
            .collect();
        f(&facts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::v1::{DiskState, ImageInfo};

    fn report(images: &[&str], free_mib: u64) -> NodeReport {
        NodeReport {
            images: images
                .iter()
                .map(|t| ImageInfo {
                    id: "sha256:1234567890abcdef".into(),
                    tags: vec![t.to_string()],
                    size_bytes: 100 << 20,
                    created_at: 0,
                    exposed_ports: Vec::new(),
                })
                .collect(),
            disk: Some(DiskState {
                free_bytes: free_mib << 20,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn plans_sources_targets_and_refuses_what_cannot_fit() {
        let (a, b, c) = (
            report(&["img:1"], 1000),
            report(&[], 1000),
            report(&[], 150),
        );
        let nodes = [
            NodeFacts {
                name: "a",
                addr: "a:1",
                ready: true,
                report: Some(&a),
            },
            NodeFacts {
                name: "b",
                addr: "b:1",
                ready: true,
                report: Some(&b),
            },
            NodeFacts {
                name: "c",
                addr: "c:1",
                ready: true,
                report: Some(&c),
            },
            NodeFacts {
                name: "d",
                addr: "d:1",
                ready: false,
                report: None,
            },
        ];
        let p = plan(&nodes, "img:1", &["b".into()], false).unwrap();
        assert_eq!(
            (p.sources.clone(), p.targets.clone()),
            (
                vec!["a:1".to_string()],
                vec![("b".to_string(), "b:1".to_string())]
            )
        );
        // By id prefix too; a holder is not a target.
        let p = plan(&nodes, "1234567890ab", &["a".into(), "b".into()], false).unwrap();
        assert_eq!(p.targets.len(), 1);
        let err = plan(&nodes, "img:1", &[], true).unwrap_err().to_string();
        assert!(
            err.contains("not enough disk") && err.contains("c has 150 MiB free"),
            "{err}"
        );
        let err = plan(&nodes, "img:1", &["d".into()], false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("node d is down"), "{err}");
        let err = plan(&nodes, "img:2", &["b".into()], false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no ready host has img:2"), "{err}");
        let err = plan(&nodes, "img:1", &["zz".into()], false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no node named zz"), "{err}");
    }
}
