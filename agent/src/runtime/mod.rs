//! The container runtime behind small traits, one per concern, so code and
//! fakes take only what they use: `Containers` (lifecycle, limits, logs:
//! what the reconciler drives), `ContainerIo` (exec, attach, cp, commit:
//! what users reach in a container), `Images` (the image store and its
//! disk: transfers and GC). `Runtime` is all three, what the agent holds.
//! Docker (bollard) in production; a call-recording fake for unit tests.

mod docker;
mod docker_images;
mod docker_io;
pub mod fake;

pub use docker::Docker;

use std::collections::HashMap;
use std::time::Duration;

use berth_proto::internal::v1::ContainerState;
use berth_proto::v1::{DiskState, ImageInfo};
use futures::stream::BoxStream;

use crate::Result;

/// Labels every Berth container carries. They are the agent's only memory:
/// a restarted agent finds its containers by them.
pub const LABEL_CLUSTER: &str = "berth.cluster";
pub const LABEL_NODE: &str = "berth.node";
pub const LABEL_JOB: &str = "berth.job";
pub const LABEL_JOB_NAME: &str = "berth.job-name";
pub const LABEL_GPUS: &str = "berth.gpus";
/// Attempt of the job (bumped by each preemption); absent means 0.
pub const LABEL_ATTEMPT: &str = "berth.attempt";
/// Set on containers of `--on-host-lost wait` jobs: never fenced.
pub const LABEL_KEEP_WHEN_LOST: &str = "berth.keep-when-lost";
/// Its job asked `--rm`: removed as soon as its end is recorded.
pub const LABEL_AUTO_REMOVE: &str = "berth.rm";

/// Everything needed to create one container; built purely from an allocation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub entrypoint: Vec<String>,
    pub env: Vec<String>,
    pub labels: HashMap<String, String>,
    /// Bind mounts, structured to the daemon (never a "SRC:DST" string a
    /// ':' in a path could rewrite).
    pub mounts: Vec<BindMount>,
    /// (container port "80/tcp", host ip, host port).
    pub ports: Vec<(String, String, u32)>,
    pub shm_size_bytes: u64,
    /// Memory limit (swap as much again, docker run's default); 0: none.
    pub memory_bytes: u64,
    /// CPU limit in billionths of a CPU; 0: none.
    pub nano_cpus: u64,
    /// docker's --pids-limit; 0: the daemon's default, -1: unlimited.
    pub pids_limit: i64,
    /// json-file log rotation (`max-size`, `max-file`); size 0: unbounded.
    pub log_max_size: u64,
    pub log_max_file: u32,
    /// GPU uuids for an NVIDIA `DeviceRequest`; empty means no device request.
    pub device_ids: Vec<String>,
    pub workdir: String,
    pub tty: bool,
    /// Keep stdin open for one attached client (docker -i).
    pub stdin: bool,
    /// docker's -u; empty: the image's user.
    pub user: String,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    /// docker's --device, "HOST[:CONTAINER[:PERMS]]".
    pub devices: Vec<String>,
    /// docker's --network / --ipc; empty: the daemon's default.
    pub network: String,
    pub ipc: String,
    /// docker's --hostname; empty: docker's default.
    pub hostname: String,
    /// docker's --ulimit: (name, soft, hard).
    pub ulimits: Vec<(String, i64, i64)>,
    pub cap_drop: Vec<String>,
    /// docker's --expose ("8080/tcp"): exposed, not published.
    pub expose: Vec<String>,
    /// docker's --cpuset-cpus ("0-15"); empty: any CPU.
    pub cpuset_cpus: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BindMount {
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

/// A Berth container as the daemon reports it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContainerInfo {
    pub id: String,
    pub job_id: String,
    /// Docker's state, parsed from its word where the daemon answered.
    pub state: ContainerState,
    pub exit_code: i32,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    /// Host pids of the container's main process (0 when not running).
    pub pid: u32,
    /// The job attempt it was created for.
    pub attempt: u32,
    /// Limits the daemon enforces now (0: none).
    pub memory_bytes: u64,
    pub nano_cpus: u64,
    /// Uuids of the GPUs it was given (its label).
    pub gpus: Vec<String>,
    /// Its job keeps running through a partition (`--on-host-lost wait`).
    pub keep_when_lost: bool,
    /// Its job asked `--rm`.
    pub auto_remove: bool,
}

impl ContainerInfo {
    pub fn is_running(&self) -> bool {
        self.state.is_running()
    }
}

/// A command to run in a container (`docker exec`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecSpec {
    pub command: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
    pub env: Vec<String>,
    pub workdir: String,
    pub user: String,
    pub rows: u32,
    pub cols: u32,
}

/// A path in a container, as `docker cp` sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    pub is_dir: bool,
}

/// A started exec: its output as it comes, and its stdin.
pub struct ExecSession {
    pub id: String,
    /// (1 stdout or 2 stderr, bytes); with a tty everything is stdout.
    pub output: BoxStream<'static, Result<(i32, bytes::Bytes)>>,
    pub input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
}

/// An image as image GC sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageUsage {
    pub image: ImageInfo,
    /// Unix ms of the last use: the newest container made from it, or when
    /// it was last tagged (loaded, built, pulled), whichever is later.
    pub last_used_ms: i64,
    /// Containers, running or stopped, made from it.
    pub containers: u32,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct DaemonInfo {
    pub version: String,
    pub root_dir: String,
    /// The rest of what `berth nodes --verbose` shows.
    pub settings: berth_proto::v1::DaemonSettings,
}

/// 1 = stdout, 2 = stderr (as berth.v1 LogChunk.Stream).
pub type LogItem = Result<(i32, Vec<u8>)>;

/// A container's life: what the reconciler drives.
#[async_trait::async_trait]
pub trait Containers: Send + Sync + 'static {
    async fn info(&self) -> Result<DaemonInfo>;
    /// All containers (any state) labelled with this cluster and node.
    async fn list(&self, cluster: &str, node: &str) -> Result<Vec<ContainerInfo>>;
    /// Creates and starts a container; returns its id.
    async fn create_and_start(&self, spec: &ContainerSpec) -> Result<String>;
    async fn start(&self, id: &str) -> Result<()>;
    /// docker stop: SIGTERM, then SIGKILL after `grace`.
    async fn stop(&self, id: &str, grace: Duration) -> Result<()>;
    /// Removes a stopped container and its anonymous volumes (`docker rm -v`).
    async fn remove(&self, id: &str) -> Result<()>;
    /// `docker update`: new memory and CPU limits on a live container
    /// (0 leaves one as it is).
    async fn update_limits(&self, id: &str, memory_bytes: u64, nano_cpus: u64) -> Result<()>;
    fn logs(&self, id: &str, follow: bool, tail: u32) -> BoxStream<'static, LogItem>;
}

/// What users reach inside a container: exec, attach, cp, commit.
#[async_trait::async_trait]
pub trait ContainerIo: Send + Sync + 'static {
    /// `docker attach` to the container's own process (with its logs so far,
    /// so a prompt printed before the attach is seen).
    async fn attach(&self, container: &str) -> Result<ExecSession>;
    /// Resizes the container's own terminal.
    async fn resize_tty(&self, container: &str, rows: u32, cols: u32) -> Result<()>;
    /// `docker exec`: starts `spec` in `container`, attached.
    async fn exec(&self, container: &str, spec: &ExecSpec) -> Result<ExecSession>;
    async fn exec_resize(&self, id: &str, rows: u32, cols: u32) -> Result<()>;
    /// The exec's exit code, once it has ended.
    async fn exec_exit_code(&self, id: &str) -> Result<Option<i64>>;
    /// What `path` is in `container`: `None` when it does not exist.
    async fn path_stat(&self, container: &str, path: &str) -> Result<Option<PathStat>>;
    /// A tar of `path` in `container`, rooted at its base name.
    fn copy_from(&self, container: &str, path: &str) -> BoxStream<'static, Result<bytes::Bytes>>;
    /// Extracts a tar into `dir` (an existing directory) of `container`. An
    /// `Err` item aborts the upload.
    async fn copy_to(
        &self,
        container: &str,
        dir: &str,
        tar: BoxStream<'static, std::result::Result<bytes::Bytes, std::io::Error>>,
    ) -> Result<()>;
    /// `docker commit`: the container as image `repo:tag`; returns its id.
    async fn commit(
        &self,
        container: &str,
        repo: &str,
        tag: &str,
        comment: &str,
        pause: bool,
    ) -> Result<String>;
}

/// The daemon's image store and the disk under it.
#[async_trait::async_trait]
pub trait Images: Send + Sync + 'static {
    async fn images(&self) -> Result<Vec<ImageInfo>>;
    async fn disk(&self) -> Result<DiskState>;
    /// The image's id and size, or `None` if the daemon does not have it.
    async fn image(&self, reference: &str) -> Result<Option<(String, u64)>>;
    /// The image's layer diff ids, bottom up (`RootFS.Layers`).
    async fn image_layers(&self, reference: &str) -> Result<Vec<String>>;
    /// `docker save` of one image, as the daemon streams it.
    fn export_image(&self, reference: &str) -> BoxStream<'static, Result<bytes::Bytes>>;
    /// `docker load` from a stream. An `Err` item aborts the upload, so the
    /// daemon sees a broken archive and loads nothing. Returns what it
    /// loaded ("name:tag", or the id of an untagged image).
    async fn import_image(
        &self,
        archive: BoxStream<'static, std::result::Result<bytes::Bytes, std::io::Error>>,
    ) -> Result<Vec<String>>;
    /// `docker rmi [-f]`.
    async fn remove_image(&self, reference: &str, force: bool) -> Result<()>;
    /// Every image with when it was last used and by how many containers
    /// (any container, not only Berth's): what image GC decides on.
    async fn image_usage(&self) -> Result<Vec<ImageUsage>>;
    /// `docker build` of a context tar: each line of the daemon's output
    /// goes to `output` as it comes; returns the image id, or the build's
    /// error (a failed RUN, a FROM the daemon lacks).
    async fn build_image(
        &self,
        spec: &BuildSpec,
        context: BoxStream<'static, std::result::Result<bytes::Bytes, std::io::Error>>,
        output: tokio::sync::mpsc::Sender<String>,
    ) -> Result<String>;
}

/// What `docker build` is asked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BuildSpec {
    pub tag: String,
    /// The Dockerfile's path in the context.
    pub dockerfile: String,
    pub build_args: HashMap<String, String>,
    pub target: String,
}

/// Everything the agent needs of its daemon.
pub trait Runtime: Containers + ContainerIo + Images {}

impl<T: Containers + ContainerIo + Images> Runtime for T {}
