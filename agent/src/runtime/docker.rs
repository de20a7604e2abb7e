//! The runtime on the Docker Engine API through bollard: the connection,
//! and `Containers` (lifecycle, limits, logs). `docker_images` holds
//! `Images`, `docker_io` `ContainerIo`.

use std::collections::HashMap;
use std::time::Duration;

use berth_proto::internal::v1::ContainerState;
use bollard::models::{
    ContainerCreateBody, DeviceMapping, DeviceRequest, HostConfig, HostConfigLogConfig, Mount,
    MountBindOptions, MountType, PortBinding, ResourcesUlimits,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RenameContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use futures::stream::BoxStream;
use futures::StreamExt;

use super::{
    ContainerInfo, ContainerSpec, Containers, DaemonInfo, LogItem, LABEL_ATTEMPT, LABEL_CLUSTER,
    LABEL_GPUS, LABEL_JOB, LABEL_KEEP_WHEN_LOST, LABEL_NODE,
};
use crate::{Error, Result};

pub struct Docker {
    pub(super) client: bollard::Docker,
    /// The same daemon with a long timeout: save and load of a big image
    /// take longer than bollard's default 120 s.
    pub(super) streams: bollard::Docker,
    /// The daemon's data root, asked once: `docker info` is one of the
    /// slowest calls of the Engine API, and the disk is read on every report.
    pub(super) root_dir: tokio::sync::OnceCell<String>,
    /// Finished containers as last inspected: an exited container does not
    /// change, so `list` (every reconcile pass) inspects it once, not each
    /// pass — a host that ran a day of short jobs keeps its passes short,
    /// and so its reports (the fencing lease) on time.
    finished: std::sync::Mutex<HashMap<String, ContainerInfo>>,
    /// Each image's EXPOSE ports by id: an image never changes, so it is
    /// inspected once, not on every report.
    pub(super) exposed: std::sync::Mutex<HashMap<String, Vec<String>>>,
}

impl Docker {
    /// Connects to the daemon at `socket` (a unix socket path, or "" for
    /// DOCKER_HOST / the default socket) and negotiates the API version, so an
    /// older engine (this machine runs 20.10, API 1.41) is spoken to in its own version.
    pub async fn connect(socket: &str) -> Result<Docker> {
        let client = if socket.is_empty() {
            bollard::Docker::connect_with_local_defaults()
        } else {
            bollard::Docker::connect_with_unix(socket, 120, bollard::API_DEFAULT_VERSION)
        }
        .map_err(|e| Error::Docker(format!("connecting to Docker at {socket:?}: {e}")))?;
        let client = client.negotiate_version().await.map_err(|e| {
            Error::Docker(format!(
                "Docker at {socket:?} does not answer: {e} (is dockerd running?)"
            ))
        })?;
        let streams = client.clone().with_timeout(Duration::from_secs(6 * 3600));
        Ok(Docker {
            client,
            streams,
            root_dir: tokio::sync::OnceCell::new(),
            finished: Default::default(),
            exposed: Default::default(),
        })
    }

    async fn inspect(&self, id: &str) -> Result<ContainerInfo> {
        let c = self
            .client
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(docker_err)?;
        let state = c.state.unwrap_or_default();
        let host = c.host_config.unwrap_or_default();
        let limit = |v: Option<i64>| v.unwrap_or(0).max(0) as u64;
        let labels = c.config.and_then(|c| c.labels).unwrap_or_default();
        Ok(ContainerInfo {
            id: c.id.unwrap_or_default(),
            job_id: labels.get(LABEL_JOB).cloned().unwrap_or_default(),
            state: ContainerState::from_docker(
                &state.status.map(|s| s.to_string()).unwrap_or_default(),
            ),
            exit_code: state.exit_code.unwrap_or(0) as i32,
            started_at_ms: parse_time(state.started_at.as_deref()),
            finished_at_ms: parse_time(state.finished_at.as_deref()),
            pid: state.pid.unwrap_or(0).max(0) as u32,
            attempt: labels
                .get(LABEL_ATTEMPT)
                .and_then(|a| a.parse().ok())
                .unwrap_or(0),
            memory_bytes: limit(host.memory),
            nano_cpus: limit(host.nano_cpus),
            gpus: labels
                .get(LABEL_GPUS)
                .map(|g| {
                    g.split(',')
                        .filter(|u| !u.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            keep_when_lost: labels
                .get(LABEL_KEEP_WHEN_LOST)
                .is_some_and(|v| v == "true"),
            auto_remove: labels
                .get(super::LABEL_AUTO_REMOVE)
                .is_some_and(|v| v == "true"),
        })
    }

    /// Frees a container name held by an exited container of an earlier Berth
    /// job (as `docker run --name` would need `docker rm`): the old container is
    /// renamed `NAME-<job id>`, so its logs stay readable. A container Berth does
    /// not manage is never touched.
    async fn free_name(&self, name: &str) -> Result<()> {
        let old = self
            .client
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .map_err(docker_err)?;
        let labels = old.config.and_then(|c| c.labels).unwrap_or_default();
        let running = old.state.and_then(|s| s.running).unwrap_or(false);
        match labels.get(LABEL_JOB) {
            Some(job) if !running => {
                // Attempts of one job (after preemptions) each keep their own.
                let new_name = match labels.get(LABEL_ATTEMPT).map(String::as_str) {
                    None | Some("0") => format!("{name}-{job}"),
                    Some(a) => format!("{name}-{job}-{a}"),
                };
                let opts = RenameContainerOptionsBuilder::default().name(&new_name).build();
                self.client.rename_container(name, opts).await.map_err(docker_err)
            }
            _ => Err(Error::Docker(format!(
                "the container name {name:?} is already used on this host by a container Berth does not manage (or one still running); choose another --name"
            ))),
        }
    }

    async fn create(
        &self,
        spec: &ContainerSpec,
    ) -> std::result::Result<String, bollard::errors::Error> {
        let opts = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        self.client
            .create_container(Some(opts), create_body(spec))
            .await
            .map(|r| r.id)
    }
}

#[async_trait::async_trait]
impl Containers for Docker {
    async fn info(&self) -> Result<DaemonInfo> {
        let info = self.client.info().await.map_err(docker_err)?;
        let mut runtimes: Vec<String> = info.runtimes.unwrap_or_default().into_keys().collect();
        runtimes.sort();
        let text = |o: Option<String>| o.unwrap_or_default();
        let settings = berth_proto::v1::DaemonSettings {
            version: text(info.server_version.clone()),
            root_dir: text(info.docker_root_dir.clone()),
            storage_driver: text(info.driver),
            cgroup_driver: info
                .cgroup_driver
                .map(|d| d.to_string())
                .unwrap_or_default(),
            default_runtime: text(info.default_runtime),
            nvidia_runtime: runtimes.iter().any(|r| r == "nvidia"),
            runtimes,
            http_proxy: text(info.http_proxy),
            https_proxy: text(info.https_proxy),
            no_proxy: text(info.no_proxy),
        };
        Ok(DaemonInfo {
            version: text(info.server_version),
            root_dir: text(info.docker_root_dir),
            settings,
        })
    }

    async fn list(&self, cluster: &str, node: &str) -> Result<Vec<ContainerInfo>> {
        let filters = HashMap::from([(
            "label",
            vec![
                format!("{LABEL_CLUSTER}={cluster}"),
                format!("{LABEL_NODE}={node}"),
            ],
        )]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let summaries = self
            .client
            .list_containers(Some(opts))
            .await
            .map_err(docker_err)?;
        let mut out = Vec::with_capacity(summaries.len());
        let listed: std::collections::HashSet<String> =
            summaries.iter().filter_map(|s| s.id.clone()).collect();
        self.finished
            .lock()
            .unwrap()
            .retain(|id, _| listed.contains(id));
        for s in summaries {
            let Some(id) = s.id else { continue };
            let exited = matches!(
                s.state,
                Some(bollard::models::ContainerSummaryStateEnum::EXITED)
                    | Some(bollard::models::ContainerSummaryStateEnum::DEAD)
            );
            if exited {
                if let Some(info) = self.finished.lock().unwrap().get(&id) {
                    out.push(info.clone());
                    continue;
                }
            } else {
                // Started again (`docker start`): its next exit is news.
                self.finished.lock().unwrap().remove(&id);
            }
            match self.inspect(&id).await {
                Ok(info) => {
                    if exited && !info.is_running() {
                        self.finished.lock().unwrap().insert(id, info.clone());
                    }
                    out.push(info)
                }
                // Removed between list and inspect: it is simply gone.
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn create_and_start(&self, spec: &ContainerSpec) -> Result<String> {
        // docker's -v creates a missing host directory; a structured bind
        // mount does not, so do what -v would (the policy has allowed it).
        for m in &spec.mounts {
            if std::fs::symlink_metadata(&m.source).is_err() {
                std::fs::create_dir_all(&m.source).map_err(|e| {
                    Error::Docker(format!("creating the host directory {}: {e}", m.source))
                })?;
            }
        }
        let id = match self.create(spec).await {
            Ok(id) => id,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => {
                self.free_name(&spec.name).await?;
                self.create(spec).await.map_err(docker_err)?
            }
            Err(e) => return Err(docker_err(e)),
        };
        self.start(&id).await?;
        Ok(id)
    }

    async fn start(&self, id: &str) -> Result<()> {
        self.client
            .start_container(id, None)
            .await
            .map_err(docker_err)
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<()> {
        let opts = StopContainerOptionsBuilder::default()
            .t(grace.as_secs() as i32)
            .build();
        match self.client.stop_container(id, Some(opts)).await {
            // 304: already stopped.
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(docker_err(e)),
        }
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let opts = RemoveContainerOptionsBuilder::default().v(true).build();
        match self.client.remove_container(id, Some(opts)).await {
            // 404: already gone.
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(docker_err(e)),
        }
    }

    async fn update_limits(&self, id: &str, memory: u64, nano_cpus: u64) -> Result<()> {
        let set = |v: u64| (v > 0).then_some(v as i64);
        let body = bollard::models::ContainerUpdateBody {
            memory: set(memory),
            // Swap as much again, as docker run gives by default; raising
            // the memory alone past the old swap limit is refused.
            memory_swap: set(memory).map(|m| 2 * m),
            nano_cpus: set(nano_cpus),
            ..Default::default()
        };
        self.client
            .update_container(id, body)
            .await
            .map_err(docker_err)
    }

    fn logs(&self, id: &str, follow: bool, tail: u32) -> BoxStream<'static, LogItem> {
        let tail = if tail == 0 {
            "all".to_string()
        } else {
            tail.to_string()
        };
        // Without stdout/stderr set, Docker sends nothing at all.
        let opts = LogsOptionsBuilder::default()
            .follow(follow)
            .stdout(true)
            .stderr(true)
            .tail(&tail)
            .build();
        self.client
            .logs(id, Some(opts))
            .map(|item| {
                item.map(|out| match out {
                    bollard::container::LogOutput::StdErr { message } => (2, message.to_vec()),
                    other => (1, other.into_bytes().to_vec()),
                })
                .map_err(docker_err)
            })
            .boxed()
    }
}

/// The Engine API body for a spec. GPUs go in as a `DeviceRequest` with
/// device ids only: Docker refuses `count` and `device_ids` together.
fn create_body(spec: &ContainerSpec) -> ContainerCreateBody {
    let non_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    // On the host network a port is the host's already: docker would
    // discard the bindings (with a warning).
    let host_network = spec.network == "host";
    for (ctr, host_ip, host_port) in spec.ports.iter().filter(|_| !host_network) {
        port_bindings
            .entry(ctr.clone())
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: (!host_ip.is_empty()).then(|| host_ip.clone()),
                host_port: Some(host_port.to_string()),
            });
    }
    let device_requests = (!spec.device_ids.is_empty()).then(|| {
        vec![DeviceRequest {
            driver: Some("nvidia".into()),
            device_ids: Some(spec.device_ids.clone()),
            capabilities: Some(vec![vec!["gpu".into()]]),
            ..Default::default()
        }]
    });
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: non_empty(&spec.command),
        entrypoint: non_empty(&spec.entrypoint),
        env: non_empty(&spec.env),
        labels: Some(spec.labels.clone()),
        working_dir: (!spec.workdir.is_empty()).then(|| spec.workdir.clone()),
        tty: Some(spec.tty),
        open_stdin: Some(spec.stdin),
        stdin_once: Some(spec.stdin),
        attach_stdin: Some(spec.stdin),
        exposed_ports: {
            let mut exposed: Vec<String> = port_bindings.keys().cloned().collect();
            for e in &spec.expose {
                if !exposed.contains(e) {
                    exposed.push(e.clone());
                }
            }
            (!exposed.is_empty()).then_some(exposed)
        },
        user: (!spec.user.is_empty()).then(|| spec.user.clone()),
        hostname: (!spec.hostname.is_empty()).then(|| spec.hostname.clone()),
        host_config: Some(HostConfig {
            mounts: (!spec.mounts.is_empty()).then(|| spec.mounts.iter().map(bind).collect()),
            privileged: spec.privileged.then_some(true),
            cap_add: non_empty(&spec.cap_add),
            cap_drop: non_empty(&spec.cap_drop),
            ulimits: (!spec.ulimits.is_empty()).then(|| {
                spec.ulimits
                    .iter()
                    .map(|(name, soft, hard)| ResourcesUlimits {
                        name: Some(name.clone()),
                        soft: Some(*soft),
                        hard: Some(*hard),
                    })
                    .collect()
            }),
            cpuset_cpus: (!spec.cpuset_cpus.is_empty()).then(|| spec.cpuset_cpus.clone()),
            devices: (!spec.devices.is_empty())
                .then(|| spec.devices.iter().map(|d| device(d)).collect()),
            network_mode: (!spec.network.is_empty()).then(|| spec.network.clone()),
            ipc_mode: (!spec.ipc.is_empty()).then(|| spec.ipc.clone()),
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            shm_size: (spec.shm_size_bytes > 0).then_some(spec.shm_size_bytes as i64),
            memory: (spec.memory_bytes > 0).then_some(spec.memory_bytes as i64),
            memory_swap: (spec.memory_bytes > 0).then_some(2 * spec.memory_bytes as i64),
            nano_cpus: (spec.nano_cpus > 0).then_some(spec.nano_cpus as i64),
            pids_limit: (spec.pids_limit != 0).then_some(spec.pids_limit),
            // json-file, whatever the daemon's default: rotation needs a
            // driver that takes max-size, and `berth logs` one it can read.
            log_config: (spec.log_max_size > 0).then(|| HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(HashMap::from([
                    ("max-size".to_string(), spec.log_max_size.to_string()),
                    ("max-file".to_string(), spec.log_max_file.max(1).to_string()),
                ])),
            }),
            device_requests,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A bind mount as docker's `-v` makes one: a missing host directory is
/// created (what `--mount type=bind` alone would refuse).
fn bind(m: &super::BindMount) -> Mount {
    Mount {
        typ: Some(MountType::BIND),
        source: Some(m.source.clone()),
        target: Some(m.target.clone()),
        read_only: Some(m.read_only),
        bind_options: Some(MountBindOptions {
            create_mountpoint: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// docker's `--device HOST[:CONTAINER[:PERMS]]`.
fn device(spec: &str) -> DeviceMapping {
    let mut parts = spec.splitn(3, ':');
    let host = parts.next().unwrap_or_default().to_string();
    let inside = parts
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or(&host)
        .to_string();
    let perms = parts
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or("rwm")
        .to_string();
    DeviceMapping {
        path_on_host: Some(host),
        path_in_container: Some(inside),
        cgroup_permissions: Some(perms),
    }
}

pub(super) fn docker_err(e: bollard::errors::Error) -> Error {
    match e {
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            message,
        } => Error::NotFound(message),
        bollard::errors::Error::DockerResponseServerError { message, .. } => Error::Docker(message),
        other => Error::Docker(other.to_string()),
    }
}

/// Docker's RFC 3339 times; its zero time ("0001-01-01T00:00:00Z") means never.
fn parse_time(t: Option<&str>) -> i64 {
    t.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis())
        .filter(|ms| *ms > 0)
        .unwrap_or(0)
}
