//! `berth run`'s flags, docker's spelling and meaning, and the job spec
//! they make: every malformed flag is refused here, before any request
//! (the controller checks everything again itself).

use anyhow::Result;
use berth_proto::v1::JobSpec;

use crate::spec;

#[derive(clap::Args)]
#[command(trailing_var_arg = true)]
pub struct Args {
    /// Whole GPUs, all on one host: N, or all (every GPU of one host).
    #[arg(long, default_value = "0")]
    pub(super) gpus: String,
    /// Bind mount SRC:DST[:ro] (SRC is a path on the host the job lands on).
    #[arg(short = 'v', long = "volume")]
    pub(super) volumes: Vec<String>,
    /// Publish a port: [IP:][HOST:]CONTAINER[/PROTO]. Without HOST, Berth
    /// picks a free host port (shown by `berth inspect`, and to the job as
    /// BERTH_HOST_PORT_<CONTAINER>).
    #[arg(short = 'p', long = "publish")]
    pub(super) ports: Vec<String>,
    /// Publish every exposed port (--expose) on a host port Berth picks.
    #[arg(short = 'P', long)]
    pub(super) publish_all: bool,
    /// Expose a container port, PORT[/PROTO] (published with -P).
    #[arg(long)]
    pub(super) expose: Vec<String>,
    /// Read environment variables from a file of KEY=VALUE lines (as docker's).
    #[arg(long = "env-file", value_name = "FILE")]
    pub(super) env_files: Vec<String>,
    /// Set a label on the container: KEY=VALUE ("berth." keys are Berth's).
    #[arg(short = 'l', long = "label")]
    pub(super) labels: Vec<String>,
    /// Container host name (docker --hostname).
    #[arg(long)]
    pub(super) hostname: Option<String>,
    /// A resource limit, NAME=SOFT[:HARD] (e.g. memlock=-1 for RDMA,
    /// nofile=65536); repeatable.
    #[arg(long = "ulimit")]
    pub(super) ulimits: Vec<String>,
    /// Remove the container once the job has ended (its logs go with it).
    #[arg(long)]
    pub(super) rm: bool,
    /// Set an environment variable: KEY=VALUE (or KEY to pass the local value).
    #[arg(short = 'e', long = "env")]
    pub(super) env: Vec<String>,
    /// Size of /dev/shm, e.g. 8g (PyTorch data loaders need more than docker's 64m).
    #[arg(long)]
    pub(super) shm_size: Option<String>,
    /// Memory limit, e.g. 16g (docker -m); swap is as much again.
    /// `berth update` changes it while the job runs.
    #[arg(short = 'm', long)]
    pub(super) memory: Option<String>,
    /// CPU limit in CPUs, e.g. 1.5 (docker --cpus). `berth update` changes
    /// it while the job runs.
    #[arg(long)]
    pub(super) cpus: Option<String>,
    /// Most processes and threads in the container (docker
    /// --pids-limit); -1: unlimited. Default: the host's (32768).
    #[arg(long, allow_negative_numbers = true)]
    pub(super) pids_limit: Option<i64>,
    /// Job (and container) name.
    #[arg(long)]
    pub(super) name: Option<String>,
    /// Override the image's entrypoint.
    #[arg(long)]
    pub(super) entrypoint: Option<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    pub(super) workdir: Option<String>,
    /// Detach: print the job id and return.
    #[arg(short = 'd', long)]
    pub(super) detach: bool,
    /// Restart policy: no, on-failure[:N], always, unless-stopped. A restart
    /// is placed again (any host that fits) after a backoff of 1 s doubling
    /// to 60 s; `berth stop` ends it.
    #[arg(long)]
    pub(super) restart: Option<String>,
    /// What losing the job's host means: fail, restart (elsewhere) or wait
    /// (keep it running through a partition; adopted when the host
    /// returns). Default: restart with a --restart policy, else fail. For
    /// fail and restart the host's agent stops the job itself first, so two
    /// copies never run at once.
    #[arg(long, value_parser = ["fail", "restart", "wait"])]
    pub(super) on_host_lost: Option<String>,
    /// Keep the job's stdin open and attach this one to it (docker -i).
    #[arg(short, long, conflicts_with_all = ["detach", "wait"])]
    pub(super) interactive: bool,
    /// Give the job a terminal, and attach this one to it (docker -t):
    /// `berth run -it IMAGE bash` is a shell on whichever host it lands.
    #[arg(short, long, conflicts_with_all = ["detach", "wait"])]
    pub(super) tty: bool,
    /// Create nothing: say where it would be placed and why (like nomad
    /// job plan), after every check a submit makes.
    #[arg(long)]
    pub(super) dry_run: bool,
    /// Wait for the job without streaming its output; exit with its code
    /// (for CI and pipelines).
    #[arg(long, conflicts_with = "detach")]
    pub(super) wait: bool,
    /// Stop the job if it has not finished this long after it was
    /// submitted (e.g. 90s, 30m, 2h) and exit with 124, as timeout(1) does.
    #[arg(long, conflicts_with = "detach")]
    pub(super) timeout: Option<humantime::Duration>,
    /// GPU model, matched as a substring of the model name (e.g. A100).
    #[arg(long)]
    pub(super) gpu_model: Option<String>,
    /// With --gpus N: least free memory per GPU (e.g. 40G). Without --gpus:
    /// a shared slice of one GPU of this size.
    #[arg(long)]
    pub(super) gpu_mem: Option<String>,
    /// Node label selector KEY=VALUE or KEY!=VALUE (repeatable).
    #[arg(long = "constraint")]
    pub(super) constraints: Vec<String>,
    /// Take the whole host: no other job runs there meanwhile.
    #[arg(long)]
    pub(super) exclusive: bool,
    /// Higher runs first (-1000..1000; default 0).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub(super) priority: i32,
    /// May be stopped and requeued for a higher-priority job.
    #[arg(long)]
    pub(super) preemptible: bool,
    /// Username or UID (format: <name|uid>[:<group|gid>]) the container's
    /// process runs as, as docker's -u. The job's owner is who your token
    /// says you are.
    #[arg(long, short = 'u', value_name = "USER")]
    pub(super) user: Option<String>,
    /// Give the container extended privileges (admins, unless the policy says otherwise).
    #[arg(long)]
    pub(super) privileged: bool,
    /// Add a Linux capability (as docker's --cap-add).
    #[arg(long = "cap-add", value_name = "CAP")]
    pub(super) cap_add: Vec<String>,
    /// Drop a Linux capability (as docker's --cap-drop; ALL for every one).
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub(super) cap_drop: Vec<String>,
    /// Add a host device, HOST[:CONTAINER[:PERMS]] (as docker's --device).
    #[arg(long = "device")]
    pub(super) devices: Vec<String>,
    /// Network: bridge (default), host or none (as docker's --network).
    #[arg(long, value_parser = ["bridge", "host", "none"])]
    pub(super) network: Option<String>,
    /// IPC namespace: private, shareable or host (as docker's --ipc).
    #[arg(long, value_parser = ["private", "shareable", "host"])]
    pub(super) ipc: Option<String>,
    /// Gang job: N tasks of --gpus GPUs each, on distinct hosts, started
    /// together, with MASTER_ADDR/MASTER_PORT/WORLD_SIZE/NODE_RANK/RANK.
    #[arg(long, default_value_t = 0)]
    pub(super) nodes: u32,
    /// Rendezvous port of a gang's rank 0 (MASTER_PORT; default 29500).
    #[arg(long, default_value_t = 0)]
    pub(super) master_port: u32,
    /// Job array START-END[%MAX_RUNNING] (e.g. 0-99%8): one task per index,
    /// each with BERTH_ARRAY_INDEX.
    #[arg(long)]
    pub(super) array: Option<String>,
    /// Image, then the command and its arguments.
    #[arg(required = true, num_args = 1..)]
    pub(super) image_and_command: Vec<String>,
}

impl Args {
    /// The job's --name, if given.
    pub fn name(&self) -> Option<String> {
        self.name.clone()
    }
}

/// Builds the spec; every malformed flag is refused here, before any request.
pub fn job_spec(args: &Args) -> Result<JobSpec> {
    let mut it = args.image_and_command.iter();
    let image = it.next().cloned().unwrap_or_default();
    // docker reads --env-file first, so -e wins over a file's line.
    let mut env = Vec::new();
    for f in &args.env_files {
        env.extend(spec::env_file(f)?);
    }
    for e in &args.env {
        env.extend(spec::env(e)?);
    }
    // One entry per name, the last given winning (what the container ends
    // up with under docker too), so `inspect` shows what the job sees.
    let mut seen = std::collections::HashSet::new();
    let mut env: Vec<String> = env
        .into_iter()
        .rev()
        .filter(|e| seen.insert(e.split_once('=').map_or(e.as_str(), |(k, _)| k).to_string()))
        .collect();
    env.reverse();
    let (gpus, gpus_all) = spec::gpus(&args.gpus)?;
    Ok(JobSpec {
        hostname: args.hostname.clone().unwrap_or_default(),
        ulimits: args
            .ulimits
            .iter()
            .map(|u| spec::ulimit(u))
            .collect::<Result<_>>()?,
        cap_drop: args.cap_drop.clone(),
        labels: args
            .labels
            .iter()
            .map(|l| spec::label(l))
            .collect::<Result<_>>()?,
        auto_remove: args.rm,
        expose: args
            .expose
            .iter()
            .map(|e| spec::expose(e))
            .collect::<Result<_>>()?,
        publish_all: args.publish_all,
        gpus_all,
        image,
        command: it.cloned().collect(),
        entrypoint: args.entrypoint.iter().cloned().collect(),
        env,
        mounts: args
            .volumes
            .iter()
            .map(|v| spec::mount(v))
            .collect::<Result<_>>()?,
        ports: args
            .ports
            .iter()
            .map(|p| spec::port(p))
            .collect::<Result<_>>()?,
        shm_size_bytes: args
            .shm_size
            .as_deref()
            .map(spec::size)
            .transpose()?
            .unwrap_or(0),
        gpus,
        workdir: args.workdir.clone().unwrap_or_default(),
        tty: args.tty,
        stdin: args.interactive,
        gpu_model: args.gpu_model.clone().unwrap_or_default(),
        gpu_memory_bytes: args
            .gpu_mem
            .as_deref()
            .map(|s| spec::size_of("--gpu-mem", s, 1 << 50))
            .transpose()?
            .unwrap_or(0),
        memory_bytes: args
            .memory
            .as_deref()
            .map(spec::memory)
            .transpose()?
            .unwrap_or(0),
        nano_cpus: args
            .cpus
            .as_deref()
            .map(spec::cpus)
            .transpose()?
            .unwrap_or(0),
        constraints: args.constraints.clone(),
        exclusive: args.exclusive,
        priority: args.priority,
        preemptible: args.preemptible,
        // Set by the controller from the token.
        user: String::new(),
        run_as: args.user.clone().unwrap_or_default(),
        privileged: args.privileged,
        cap_add: args.cap_add.clone(),
        devices: args.devices.clone(),
        network: args.network.clone().unwrap_or_default(),
        ipc: args.ipc.clone().unwrap_or_default(),
        nodes: args.nodes,
        master_port: args.master_port,
        array: args.array.as_deref().map(spec::array).transpose()?,
        restart: args.restart.clone().unwrap_or_default(),
        on_host_lost: args.on_host_lost.clone().unwrap_or_default(),
        pids_limit: args.pids_limit.unwrap_or(0),
    })
}
