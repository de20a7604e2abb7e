//! `berth.internal.v1.ControlPlane`: what agents call.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::internal::v1::control_plane_server::ControlPlane;
use berth_proto::internal::v1::*;
use futures::Stream;
use tonic::{Request, Response, Status};

mod join;
mod report;

use crate::api::auth::guard::Access;
use crate::api::auth::{caller, Identity};
use crate::core::{wire, Controller};
use crate::state::{self, GpuInventory, NodeRecord, State};

/// Desired state is re-sent at least this often, even unchanged, so an agent
/// that missed nothing still re-reconciles (level-triggered).
const RESEND_EVERY: Duration = Duration::from_secs(5);

pub struct Control(pub Arc<Controller>, pub Arc<Access>);

/// A node registers, reports and watches under the name in its
/// certificate, and no other: a second agent cannot pose as the first.
fn as_node<T>(req: &Request<T>, node: &str) -> Result<(), Status> {
    match caller(req)? {
        Identity::Node(n) if n == node => Ok(()),
        Identity::Node(n) => Err(Status::permission_denied(format!(
            "this agent's certificate is for node {n}, not {node} (rule: control.own-name): start it with --name {n}, or join it as {node}"
        ))),
        other => Err(Status::permission_denied(format!(
            "{} is not a node (rule: control.nodes-only)",
            other.describe()
        ))),
    }
}

type AllocStream = Pin<Box<dyn Stream<Item = Result<DesiredAllocations, Status>> + Send>>;

#[tonic::async_trait]
impl ControlPlane for Control {
    async fn register(
        &self,
        req: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        as_node(&req, &req.get_ref().node)?;
        let r = req.into_inner();
        if r.node.is_empty() || r.agent_addr.is_empty() {
            return Err(Status::invalid_argument("node and agent_addr are required"));
        }
        let mut labels = std::collections::BTreeMap::new();
        for l in &r.labels {
            match l.split_once('=') {
                Some((k, v)) if !k.is_empty() && !k.contains('!') => {
                    labels.insert(k.to_string(), v.to_string());
                }
                _ => {
                    return Err(Status::invalid_argument(format!(
                        "node label {l:?} must look like key=value"
                    )))
                }
            }
        }
        let gpu_backend = match r.gpu_backend() {
            GpuBackend::Nvml => state::GpuBackend::Nvml,
            GpuBackend::Simulated => state::GpuBackend::Simulated,
            GpuBackend::Unspecified => {
                return Err(Status::invalid_argument(
                    "gpu_backend is required (nvml or simulated)",
                ))
            }
        };
        let node = NodeRecord {
            labels,
            name: r.node,
            agent_addr: r.agent_addr,
            gpu_backend,
            gpus: r
                .gpus
                .into_iter()
                .map(|g| GpuInventory {
                    index: g.index,
                    uuid: g.uuid,
                    model: g.model,
                    memory_total_bytes: g.memory_total_bytes,
                    group: g.topology_group,
                })
                .collect(),
            docker_version: r.docker_version,
            millicpus: r.millicpus,
            memory_bytes: r.memory_bytes,
            numa_nodes: r.numa_nodes,
        };
        let cluster_id = self.0.register(node).await?;
        Ok(Response::new(RegisterResponse {
            cluster_id,
            node_lost_after_ms: self.0.node_lost_after.as_millis() as u64,
        }))
    }

    type WatchAllocationsStream = AllocStream;

    async fn watch_allocations(
        &self,
        req: Request<WatchAllocationsRequest>,
    ) -> Result<Response<AllocStream>, Status> {
        as_node(&req, &req.get_ref().node)?;
        let node = req.into_inner().node;
        self.0.ensure_leader()?;
        if !self.0.read(|s| s.nodes.contains_key(&node)) {
            return Err(Status::failed_precondition(format!(
                "node {node} is not registered"
            )));
        }
        Ok(Response::new(Box::pin(allocations(self.0.clone(), node))))
    }

    async fn report(
        &self,
        req: Request<ReportRequest>,
    ) -> Result<Response<ReportResponse>, Status> {
        let node = req.get_ref().report.as_ref().map(|r| r.node.clone());
        as_node(&req, node.as_deref().unwrap_or_default())?;
        let report = req
            .into_inner()
            .report
            .ok_or_else(|| Status::invalid_argument("a report is required"))?;
        self.0.report(report).await?;
        Ok(Response::new(ReportResponse {}))
    }

    async fn join(&self, req: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let cert_pem = join::join(&self.0, &self.1, req.into_inner()).await?;
        Ok(Response::new(JoinResponse { cert_pem }))
    }

    async fn renew_certificate(
        &self,
        req: Request<RenewCertificateRequest>,
    ) -> Result<Response<RenewCertificateResponse>, Status> {
        let Identity::Node(node) = caller(&req)? else {
            return Err(Status::permission_denied(
                "only nodes renew node certificates",
            ));
        };
        let cert_pem = join::sign(&self.1, &node, &req.into_inner().csr_pem)?;
        tracing::info!(%node, "renewed a node certificate");
        Ok(Response::new(RenewCertificateResponse { cert_pem }))
    }

    async fn image_sources(
        &self,
        req: Request<ImageSourcesRequest>,
    ) -> Result<Response<ImageSourcesResponse>, Status> {
        as_node(&req, &req.get_ref().node)?;
        let req = req.into_inner();
        self.0.ensure_leader()?;
        let (sources, image_size) = self.0.image_sources(&req.node, &req.image);
        Ok(Response::new(ImageSourcesResponse {
            sources,
            image_size,
        }))
    }
}

/// A node's desired allocations, sent when they change and every
/// `RESEND_EVERY` as a heartbeat, until this controller stops leading.
/// Every applied command wakes every node's stream, so one whose node did
/// not change (`State::node_stamp`) goes back to sleep without rebuilding
/// its allocations: at 1,000 hosts, a command touches one or a few.
pub fn allocations(
    ctl: Arc<Controller>,
    node: String,
) -> impl Stream<Item = Result<DesiredAllocations, Status>> + Send {
    let mut applied = ctl.subscribe_applied();
    async_stream::stream! {
        let mut last: Option<(u64, Vec<Allocation>)> = None;
        // The policy travels on the first message and after each change
        // only: agents keep the last one they got.
        let mut policy_sent: Option<u64> = None;
        let mut last_sent = tokio::time::Instant::now();
        loop {
            if let Err(e) = ctl.ensure_leader() {
                // Lost leadership: end the stream so the agent finds the new leader.
                yield Err(Status::from(e));
                break;
            }
            let due = last.is_none() || last_sent.elapsed() >= RESEND_EVERY;
            let stamp = last.as_ref().map(|(s, _)| *s);
            let changed = ctl.read(|s| {
                let now = s.node_stamp(&node);
                let policy = (policy_sent != Some(s.policy_index))
                    .then(|| (s.policy_index, policy_toml(s)));
                (due || Some(now) != stamp || policy.is_some())
                    .then(|| (now, s.applied_index, desired(s, &node), policy))
            });
            if let Some((now, revision, allocations, policy)) = changed {
                if due || policy.is_some() || last.as_ref().map(|(_, a)| a) != Some(&allocations) {
                    last_sent = tokio::time::Instant::now();
                    let policy_toml = match policy {
                        Some((index, toml)) => {
                            policy_sent = Some(index);
                            toml
                        }
                        None => String::new(),
                    };
                    yield Ok(DesiredAllocations { revision, allocations: allocations.clone(), policy_toml });
                }
                last = Some((now, allocations));
            }
            // Wake at least every second to notice a leadership change.
            let wait = RESEND_EVERY.saturating_sub(last_sent.elapsed()).min(Duration::from_secs(1));
            if let Ok(Err(_)) = tokio::time::timeout(wait, applied.changed()).await {
                break; // controller shutting down
            }
        }
    }
}

/// The allocations an agent must converge to: every job on the node that holds resources.
pub fn desired(state: &State, node: &str) -> Vec<Allocation> {
    state
        .jobs_on(node)
        .map(|j| {
            let published = crate::state::published(&j.spec, &j.picked_ports);
            Allocation {
                job_id: j.id.clone(),
                job_name: j.name.clone(),
                spec: Some(berth_proto::v1::JobSpec {
                    // With the host ports Berth picked filled in.
                    ports: published.iter().map(wire::port_to_wire).collect(),
                    ..wire::spec_to_wire(&j.spec)
                }),
                gpus: wire::gpus_to_wire(&j.gpus),
                state: wire::state_to_wire(j.state) as i32,
                extra_env: extra_env(j, &published),
                attempt: j.attempt(),
                owner_role: j.spec.role.clone(),
                keep_when_lost: j.spec.on_host_lost.resolve(&j.spec.restart)
                    == crate::state::OnHostLost::Wait,
            }
        })
        .collect()
}

/// The policy the agent re-checks containers against (sent when it
/// changed; every applied command wakes the streams, a policy change too).
fn policy_toml(s: &State) -> String {
    s.policy_in_force().to_toml()
}

/// What the controller adds to a job's environment: its task's (array index,
/// gang rendezvous) and, for a GPU slice, the bytes reserved, so a framework
/// can cap itself (e.g. TensorFlow's memory limit, PyTorch's
/// set_per_process_memory_fraction).
fn extra_env(j: &crate::state::JobRecord, published: &[crate::state::PortMapping]) -> Vec<String> {
    let mut env = j.task_env.clone();
    if crate::state::is_slice(&j.spec) {
        env.push(format!(
            "BERTH_GPU_MEMORY_BYTES={}",
            j.spec.gpu_memory_bytes
        ));
    }
    // Where each published port is reachable on the host, as Kubernetes
    // tells a pod its service's port: BERTH_HOST_PORT_8080=30001.
    for p in published {
        let udp = if crate::state::norm_proto(&p.protocol) == "udp" {
            "_UDP"
        } else {
            ""
        };
        env.push(format!(
            "BERTH_HOST_PORT_{}{udp}={}",
            p.container_port, p.host_port
        ));
    }
    env
}
