//! The agent's loops: register with a controller, follow the node's desired
//! allocations, reconcile the Docker daemon toward them, report status.
//! Any error ends the session; the agent then reconnects (trying every
//! controller it was given) and starts over — all it knows lives in Docker labels.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_proto::connect::{Deadlines, Timed};
use berth_proto::internal::v1::control_plane_client::ControlPlaneClient;
use berth_proto::internal::v1::*;
use berth_proto::v1::{DaemonSettings, ImageInfo};

use berth_proto::image_ref;

use crate::gpu::{classify, pid_in_containers, GpuBackend};
use crate::pulls::{PullContext, Pulls};
use crate::reconcile::{cleanup, plan, zombies, Action};
use crate::runtime::{ContainerInfo, Runtime};
use crate::{container, Error, Result};

/// How long a container `berth update` changed is left to its new limits
/// before the reconciler holds it to its job's again (the controller commits
/// the change right after the daemon took it; this only covers the gap).
const UPDATE_SETTLE: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a report may wait for the controller's answer.
const REPORT_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node: String,
    /// Controller addresses (host:port); tried in turn.
    pub controllers: Vec<String>,
    /// Where the controller reaches this agent's data plane.
    pub advertise_addr: String,
    pub report_every: Duration,
    /// docker stop's grace period before SIGKILL.
    pub stop_grace: Duration,
    /// Placement labels, "key=value" (`--label zone=rack2`).
    pub labels: Vec<String>,
    /// How images are asked of other agents (compression, layer skipping).
    pub images: crate::images::ImageOptions,
    /// This node's certificate and the cluster CA: every link is mutual TLS.
    /// Renewal (`certs`) replaces it while the agent runs.
    pub tls: berth_proto::tls::Current,
    /// Where renewed certificates are written (none: kept in memory only).
    pub tls_dir: Option<std::path::PathBuf>,
    /// This agent's own directories (its TLS keys): no mount may reach them.
    pub protected_paths: Vec<String>,
    /// Where exec, cp and commit sessions are recorded (`--audit-log`).
    pub audit: Option<Arc<crate::audit::Audit>>,
    /// Log, pids and memory defaults for containers, and how long finished
    /// ones are kept.
    pub limits: crate::limits::HostLimits,
    /// CPU and memory offered to the scheduler, and the gang interface.
    pub resources: crate::resources::HostResources,
}

pub struct Agent {
    pub cfg: AgentConfig,
    pub runtime: Arc<dyn Runtime>,
    pub gpus: Arc<dyn GpuBackend>,
    /// Learned at registration; containers are labelled with it.
    pub cluster_id: Arc<Mutex<String>>,
    /// Containers with a `docker stop` in flight, so a slow stop is not repeated.
    stopping: Arc<Mutex<HashSet<String>>>,
    /// (container, memory, CPUs) updates the daemon refused.
    refused_updates: Mutex<HashSet<(String, u64, u64)>>,
    /// Containers `berth update` changed directly, and when: the change
    /// reaches this agent's desired allocations only once committed, and
    /// until then the reconciler must not put the old limits back.
    pub updated_at: Mutex<HashMap<String, std::time::Instant>>,
    /// Images being received here that other agents read as they arrive.
    pub relays: crate::relay::Relays,
    /// Images being received for jobs placed here.
    pub pulls: Arc<Pulls>,
    /// Exports to other agents in flight (reported: holders busy sending
    /// are chosen last as sources).
    pub exports: Arc<AtomicU32>,
    /// Poked when this host gained an image (commit, load, transfer): the
    /// next report goes at once, and the controller, which waits for it,
    /// answers the command so the next one sees the image.
    pub report_now: tokio::sync::Notify,
    /// The current session's control plane (pulls ask it for holders).
    control: Mutex<Option<ControlPlaneClient<Timed>>>,
    /// The daemon's settings, read when the session started.
    daemon: Mutex<DaemonSettings>,
    /// The cluster's policy as the controller last sent it; containers are
    /// checked against it (and the built-in deny list) before creation.
    policy: Mutex<berth_proto::policy::Policy>,
    /// Bumped when the certificate is renewed: the data plane restarts its
    /// TLS with the new one.
    pub cert_generation: tokio::sync::watch::Sender<u64>,
    /// How long this host may go without a controller before it fences.
    pub lease: crate::fence::Lease,
}

/// The control plane of the current leader among `controllers`, dialled
/// with `tls` (a node's certificate, or only the CA for a joining agent),
/// waiting up to `patience` for an election.
pub async fn control_plane(
    controllers: &[String],
    tls: berth_proto::tls::Tls,
    patience: Duration,
) -> Result<ControlPlaneClient<Timed>> {
    let dial = berth_proto::connect::Dial {
        tls,
        bearer: Default::default(),
    };
    let (channel, addr) = berth_proto::connect::leader(&dial, controllers, patience)
        .await
        .map_err(Error::Controller)?;
    tracing::debug!(leader = %addr, "connected to the leader");
    Ok(ControlPlaneClient::new(Deadlines::new(channel)))
}

impl Agent {
    pub fn new(
        cfg: AgentConfig,
        runtime: Arc<dyn Runtime>,
        gpus: Arc<dyn GpuBackend>,
    ) -> Arc<Agent> {
        Arc::new(Agent {
            runtime,
            gpus,
            cluster_id: Arc::new(Mutex::new(String::new())),
            stopping: Arc::default(),
            refused_updates: Mutex::default(),
            updated_at: Mutex::default(),
            relays: Default::default(),
            pulls: Arc::default(),
            exports: Arc::default(),
            report_now: tokio::sync::Notify::new(),
            control: Mutex::new(None),
            daemon: Mutex::default(),
            policy: Mutex::default(),
            cert_generation: tokio::sync::watch::Sender::new(0),
            lease: crate::fence::Lease::new(cfg.tls_dir.as_deref()),
            cfg,
        })
    }

    /// Runs sessions until the process ends, reconnecting with backoff;
    /// the fence watches the lease meanwhile.
    pub async fn run(self: Arc<Self>) {
        tokio::spawn(self.clone().fence_forever());
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.session().await {
                Ok(()) => backoff = Duration::from_millis(200),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "controller session ended")
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// The control plane of the current leader, with this node's
    /// certificate as it is now.
    async fn connect(&self) -> Result<ControlPlaneClient<Timed>> {
        control_plane(
            &self.cfg.controllers,
            self.cfg.tls.get(),
            Duration::from_secs(5),
        )
        .await
    }

    async fn session(&self) -> Result<()> {
        let mut client = self.connect().await?;
        let inventory = self.gpus.sample()?;
        let info = self.runtime.info().await?;
        *self.daemon.lock().unwrap() = info.settings.clone();
        let sent = std::time::Instant::now();
        let registered = client
            .register(RegisterRequest {
                node: self.cfg.node.clone(),
                agent_addr: self.cfg.advertise_addr.clone(),
                gpu_backend: self.gpus.kind() as i32,
                gpus: classify(inventory, |_| true),
                docker_version: info.version,
                labels: self.cfg.labels.clone(),
                millicpus: self.cfg.resources.millicpus(),
                memory_bytes: self.cfg.resources.memory_bytes(),
                numa_nodes: crate::resources::numa_nodes(),
            })
            .await?
            .into_inner();
        let cluster = registered.cluster_id;
        self.lease.learn(
            Duration::from_millis(registered.node_lost_after_ms),
            &cluster,
        );
        self.lease.renewed(sent);
        if cluster.is_empty() {
            // Containers labelled with no cluster could be adopted by any cluster.
            return Err(Error::Controller(
                "the controller has no cluster id yet".into(),
            ));
        }
        *self.cluster_id.lock().unwrap() = cluster.clone();
        *self.control.lock().unwrap() = Some(client.clone());
        tracing::info!(node = %self.cfg.node, %cluster, "registered");
        let mut stream = client
            .watch_allocations(WatchAllocationsRequest {
                node: self.cfg.node.clone(),
            })
            .await?
            .into_inner();
        let mut desired: Option<DesiredAllocations> = None;
        let mut failed: HashMap<String, String> = HashMap::new();
        let mut tick = tokio::time::interval(self.cfg.report_every);
        let mut renewed = self.cert_generation.subscribe();
        loop {
            tokio::select! {
                msg = stream.message() => match msg? {
                    Some(d) => desired = Some(d),
                    None => return Err(Error::Controller("allocation stream closed".into())),
                },
                // A renewed certificate: start a session with it (the
                // channel would otherwise reconnect with the old one).
                _ = renewed.changed() => return Ok(()),
                _ = tick.tick() => {}
                // A transfer ended: create the waiting containers now.
                _ = self.pulls.finished.notified() => {}
                _ = self.report_now.notified() => {}
            }
            let start = std::time::Instant::now();
            let report = self
                .reconcile(&cluster, desired.as_ref(), &mut failed)
                .await?;
            crate::metrics::metrics()
                .pass_seconds
                .observe(start.elapsed().as_secs_f64());
            // A deadline: a controller that stopped answering (a silent
            // partition) ends the session instead of stalling it.
            let sent = std::time::Instant::now();
            let answered = tokio::time::timeout(
                REPORT_DEADLINE,
                client.report(ReportRequest {
                    report: Some(report),
                }),
            )
            .await
            .map_err(|_| Error::Controller(format!("no answer to a report in {REPORT_DEADLINE:?}")))
            .and_then(|r| r.map_err(Error::from));
            crate::metrics::metrics().report(answered.is_ok());
            answered?;
            // Only a leader answers reports: the lease runs from here.
            self.lease.renewed(sent);
        }
    }

    /// One reconcile pass, then the report describing the daemon after it.
    pub async fn reconcile(
        &self,
        cluster: &str,
        desired: Option<&DesiredAllocations>,
        failed: &mut HashMap<String, String>,
    ) -> Result<NodeReport> {
        let node = &self.cfg.node;
        let mut actual = self.runtime.list(cluster, node).await?;
        let mut images = self.runtime.images().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "image list failed");
            Vec::new()
        });
        let mut observed_revision = 0;
        let mut zombie_gpus = Vec::new();
        if let Some(d) = desired {
            if !d.policy_toml.is_empty() {
                match berth_proto::policy::Policy::from_toml(&d.policy_toml) {
                    Ok(p) => *self.policy.lock().unwrap() = p,
                    Err(e) => {
                        tracing::warn!(error = %e, "the controller sent a policy this agent cannot read; keeping the last one")
                    }
                }
            }
            let live = |job: &str| d.allocations.iter().any(|a| a.job_id == job);
            failed.retain(|job, _| live(job));
            // Jobs stopped by the fence are reported failed until their
            // controller has taken it in.
            failed.extend(self.lease.fenced_jobs(live));
            let present = |r: &str| images.iter().any(|i| image_ref::names(&i.id, &i.tags, r));
            for (job, why) in self.pulls.settle(present, live) {
                failed.entry(job).or_insert(why);
            }
            let failed_ids: HashSet<String> = failed.keys().cloned().collect();
            let mut actions = plan(&d.allocations, &actual, &failed_ids, &present);
            actions.extend(cleanup(
                &d.allocations,
                &actual,
                crate::now_ms(),
                self.cfg.limits.retention().as_millis() as i64,
            ));
            if !actions.is_empty() {
                for action in actions {
                    self.execute(cluster, action, failed).await;
                }
                actual = self.runtime.list(cluster, node).await?;
                images = self.runtime.images().await.unwrap_or(images);
            }
            observed_revision = d.revision;
            zombie_gpus = zombies(&d.allocations, &actual)
                .into_iter()
                .flat_map(|c| c.gpus.iter().map(move |g| (g.clone(), c.id.clone())))
                .collect();
        }
        let mut report = self
            .report(observed_revision, &actual, images, failed)
            .await;
        mark_zombie_gpus(&mut report.gpus, &zombie_gpus);
        Ok(report)
    }

    async fn execute(&self, cluster: &str, action: Action, failed: &mut HashMap<String, String>) {
        let word = action.word();
        let ok = self.act(cluster, action, failed).await;
        crate::metrics::metrics().action(word, ok);
    }

    /// Takes one action; false when it failed.
    async fn act(
        &self,
        cluster: &str,
        action: Action,
        failed: &mut HashMap<String, String>,
    ) -> bool {
        match action {
            Action::Create(alloc) => {
                let policy = self.policy.lock().unwrap().clone();
                if let Err(why) = container::admit(&alloc, &policy, &self.cfg.protected_paths) {
                    tracing::warn!(job = %alloc.job_id, error = %why, "refused by policy");
                    failed.insert(alloc.job_id.clone(), why);
                    return false;
                }
                // Each GPU's close CPUs, for pinning: sampled at create only.
                let affinity = self
                    .gpus
                    .sample()
                    .map(|s| s.into_iter().map(|g| (g.uuid, g.cpu_affinity)).collect())
                    .unwrap_or_default();
                let host = container::HostSide {
                    limits: &self.cfg.limits,
                    affinity,
                    nccl_socket_ifname: self.cfg.resources.nccl_socket_ifname.as_deref(),
                };
                let spec = container::spec(
                    &alloc,
                    cluster,
                    &self.cfg.node,
                    self.gpus.kind() == berth_proto::internal::v1::GpuBackend::Nvml,
                    &host,
                );
                match self.runtime.create_and_start(&spec).await {
                    Ok(id) => {
                        tracing::info!(job = %alloc.job_id, container = %&id[..12.min(id.len())], gpus = ?spec.device_ids, "started");
                        true
                    }
                    Err(e) => {
                        tracing::warn!(job = %alloc.job_id, error = %e, "create failed");
                        failed.insert(alloc.job_id.clone(), e.to_string());
                        false
                    }
                }
            }
            Action::Pull { job_id, image } => {
                if !self.pulls.join(&image, &job_id) {
                    return true;
                }
                let Some(control) = self.control.lock().unwrap().clone() else {
                    return false;
                };
                tracing::info!(job = %job_id, %image, "image not here: pulling it from a holder");
                let cx = PullContext {
                    node: self.cfg.node.clone(),
                    runtime: self.runtime.clone(),
                    images: self.cfg.images,
                    tls: self.cfg.tls.get(),
                    pulls: self.pulls.clone(),
                    control,
                };
                tokio::spawn(crate::pulls::run(cx, image));
                true
            }
            Action::Start {
                job_id,
                container_id,
            } => match self.runtime.start(&container_id).await {
                Ok(()) => true,
                Err(e) => {
                    failed.insert(job_id, e.to_string());
                    false
                }
            },
            Action::Update {
                job_id,
                container_id,
                memory_bytes,
                nano_cpus,
            } => {
                // A refusal (say, memory below what the process uses) is
                // logged once, not retried every pass; a new value is tried.
                let key = (container_id.clone(), memory_bytes, nano_cpus);
                if self.refused_updates.lock().unwrap().contains(&key) {
                    return true;
                }
                {
                    let mut updated = self.updated_at.lock().unwrap();
                    updated.retain(|_, at| at.elapsed() < UPDATE_SETTLE);
                    if updated.contains_key(&container_id) {
                        return true; // a `berth update` whose commit is on its way
                    }
                }
                match self
                    .runtime
                    .update_limits(&container_id, memory_bytes, nano_cpus)
                    .await
                {
                    Ok(()) => {
                        tracing::info!(job = %job_id, memory_bytes, nano_cpus, "limits updated");
                        true
                    }
                    Err(e) => {
                        tracing::warn!(job = %job_id, error = %e, "docker update refused");
                        self.refused_updates.lock().unwrap().insert(key);
                        false
                    }
                }
            }
            Action::Stop {
                job_id,
                container_id,
            } => {
                // Its outcome is counted when the stop ends (in the background).
                self.stop_in_background(job_id, container_id, self.cfg.stop_grace);
                true
            }
            Action::Remove {
                job_id,
                container_id,
            } => match self.runtime.remove(&container_id).await {
                Ok(()) => {
                    tracing::info!(job = %job_id, container = %&container_id[..12.min(container_id.len())], "removed its finished container");
                    true
                }
                Err(e) => {
                    tracing::warn!(job = %job_id, error = %e, "container removal failed");
                    false
                }
            },
        }
    }

    /// `docker stop` with `grace`, off the loop (it waits the grace out),
    /// once per container at a time.
    pub(crate) fn stop_in_background(&self, job_id: String, container_id: String, grace: Duration) {
        if !self.stopping.lock().unwrap().insert(container_id.clone()) {
            return;
        }
        tracing::info!(job = %job_id, "stopping");
        let (runtime, stopping) = (self.runtime.clone(), self.stopping.clone());
        tokio::spawn(async move {
            let stopped = runtime.stop(&container_id, grace).await;
            if let Err(e) = &stopped {
                tracing::warn!(job = %job_id, error = %e, "stop failed");
            }
            crate::metrics::metrics().action("stop_finished", stopped.is_ok());
            stopping.lock().unwrap().remove(&container_id);
        });
    }

    async fn report(
        &self,
        observed_revision: u64,
        actual: &[ContainerInfo],
        images: Vec<ImageInfo>,
        failed: &HashMap<String, String>,
    ) -> NodeReport {
        let ids: Vec<String> = actual.iter().map(|c| c.id.clone()).collect();
        let gpus = match self.gpus.sample() {
            Ok(s) => classify(s, |pid| pid_in_containers(pid, &ids)),
            Err(e) => {
                tracing::warn!(error = %e, "GPU sample failed");
                Vec::new()
            }
        };
        let disk = self
            .runtime
            .disk()
            .await
            .map_err(|e| tracing::warn!(error = %e, "disk stat failed"))
            .ok();
        NodeReport {
            node: self.cfg.node.clone(),
            observed_revision,
            gpus,
            disk,
            images,
            containers: actual
                .iter()
                .map(|c| ContainerStatus {
                    job_id: c.job_id.clone(),
                    container_id: c.id.clone(),
                    state: c.state as i32,
                    exit_code: c.exit_code,
                    started_at_ms: c.started_at_ms,
                    finished_at_ms: c.finished_at_ms,
                    attempt: c.attempt,
                })
                .collect(),
            failures: failed
                .iter()
                .map(|(job_id, message)| AllocationFailure {
                    job_id: job_id.clone(),
                    message: message.clone(),
                })
                .collect(),
            pulls: self.pulls.report(),
            daemon: Some(self.daemon.lock().unwrap().clone()),
            exports_in_flight: self.exports.load(Ordering::Relaxed),
        }
    }
}

/// GPUs of zombie containers (running, wanted by no allocation: being
/// stopped) are busy until they are gone: each gets a foreign process
/// naming the container, so the scheduler places nothing there.
fn mark_zombie_gpus(gpus: &mut [berth_proto::v1::Gpu], zombie_gpus: &[(String, String)]) {
    for (uuid, container) in zombie_gpus {
        if let Some(g) = gpus.iter_mut().find(|g| &g.uuid == uuid) {
            g.foreign_processes.push(berth_proto::v1::GpuProcess {
                pid: 0,
                name: format!(
                    "berth container {} (no job here wants it; stopping)",
                    &container[..12.min(container.len())]
                ),
                used_memory_bytes: 0,
            });
        }
    }
}

#[cfg(test)]
#[path = "agent_tests.rs"]
mod tests;
