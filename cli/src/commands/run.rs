//! `berth run`: submit, then (unless -d) follow the job like `docker run`:
//! placement on stderr, the container's output on stdout/stderr, and the
//! container's exit code as ours.

use anyhow::Result;
use berth_proto::v1::{
    event, CancelJobRequest, Job, JobSpec, JobState, SubmitJobRequest, WaitJobRequest, WatchRequest,
};
use futures::StreamExt;

use crate::client::{status_message, Client};
use crate::output::{state, Format};
use crate::spec;

#[derive(clap::Args)]
#[command(trailing_var_arg = true)]
pub struct Args {
    /// Whole GPUs, all on one host: N, or all (every GPU of one host).
    #[arg(long, default_value = "0")]
    gpus: String,
    /// Bind mount SRC:DST[:ro] (SRC is a path on the host the job lands on).
    #[arg(short = 'v', long = "volume")]
    volumes: Vec<String>,
    /// Publish a port: [IP:][HOST:]CONTAINER[/PROTO]. Without HOST, Berth
    /// picks a free host port (shown by `berth inspect`, and to the job as
    /// BERTH_HOST_PORT_<CONTAINER>).
    #[arg(short = 'p', long = "publish")]
    ports: Vec<String>,
    /// Publish every exposed port (--expose) on a host port Berth picks.
    #[arg(short = 'P', long)]
    publish_all: bool,
    /// Expose a container port, PORT[/PROTO] (published with -P).
    #[arg(long)]
    expose: Vec<String>,
    /// Read environment variables from a file of KEY=VALUE lines (as docker's).
    #[arg(long = "env-file", value_name = "FILE")]
    env_files: Vec<String>,
    /// Set a label on the container: KEY=VALUE ("berth." keys are Berth's).
    #[arg(short = 'l', long = "label")]
    labels: Vec<String>,
    /// Container host name (docker --hostname).
    #[arg(long)]
    hostname: Option<String>,
    /// A resource limit, NAME=SOFT[:HARD] (e.g. memlock=-1 for RDMA,
    /// nofile=65536); repeatable.
    #[arg(long = "ulimit")]
    ulimits: Vec<String>,
    /// Remove the container once the job has ended (its logs go with it).
    #[arg(long)]
    rm: bool,
    /// Set an environment variable: KEY=VALUE (or KEY to pass the local value).
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Size of /dev/shm, e.g. 8g (PyTorch data loaders need more than docker's 64m).
    #[arg(long)]
    shm_size: Option<String>,
    /// Memory limit, e.g. 16g (docker -m); swap is as much again.
    /// `berth update` changes it while the job runs.
    #[arg(short = 'm', long)]
    memory: Option<String>,
    /// CPU limit in CPUs, e.g. 1.5 (docker --cpus). `berth update` changes
    /// it while the job runs.
    #[arg(long)]
    cpus: Option<String>,
    /// Most processes and threads in the container (docker
    /// --pids-limit); -1: unlimited. Default: the host's (32768).
    #[arg(long, allow_negative_numbers = true)]
    pids_limit: Option<i64>,
    /// Job (and container) name.
    #[arg(long)]
    name: Option<String>,
    /// Override the image's entrypoint.
    #[arg(long)]
    entrypoint: Option<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// Detach: print the job id and return.
    #[arg(short = 'd', long)]
    detach: bool,
    /// Restart policy: no, on-failure[:N], always, unless-stopped. A restart
    /// is placed again (any host that fits) after a backoff of 1 s doubling
    /// to 60 s; `berth stop` ends it.
    #[arg(long)]
    restart: Option<String>,
    /// What losing the job's host means: fail, restart (elsewhere) or wait
    /// (keep it running through a partition; adopted when the host
    /// returns). Default: restart with a --restart policy, else fail. For
    /// fail and restart the host's agent stops the job itself first, so two
    /// copies never run at once.
    #[arg(long, value_parser = ["fail", "restart", "wait"])]
    on_host_lost: Option<String>,
    /// Keep the job's stdin open and attach this one to it (docker -i).
    #[arg(short, long, conflicts_with_all = ["detach", "wait"])]
    interactive: bool,
    /// Give the job a terminal, and attach this one to it (docker -t):
    /// `berth run -it IMAGE bash` is a shell on whichever host it lands.
    #[arg(short, long, conflicts_with_all = ["detach", "wait"])]
    tty: bool,
    /// Create nothing: say where it would be placed and why (like nomad
    /// job plan), after every check a submit makes.
    #[arg(long)]
    dry_run: bool,
    /// Wait for the job without streaming its output; exit with its code
    /// (for CI and pipelines).
    #[arg(long, conflicts_with = "detach")]
    wait: bool,
    /// Stop the job if it has not finished this long after it was
    /// submitted (e.g. 90s, 30m, 2h) and exit with 124, as timeout(1) does.
    #[arg(long, conflicts_with = "detach")]
    timeout: Option<humantime::Duration>,
    /// GPU model, matched as a substring of the model name (e.g. A100).
    #[arg(long)]
    gpu_model: Option<String>,
    /// With --gpus N: least free memory per GPU (e.g. 40G). Without --gpus:
    /// a shared slice of one GPU of this size.
    #[arg(long)]
    gpu_mem: Option<String>,
    /// Node label selector KEY=VALUE or KEY!=VALUE (repeatable).
    #[arg(long = "constraint")]
    constraints: Vec<String>,
    /// Take the whole host: no other job runs there meanwhile.
    #[arg(long)]
    exclusive: bool,
    /// Higher runs first (-1000..1000; default 0).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    priority: i32,
    /// May be stopped and requeued for a higher-priority job.
    #[arg(long)]
    preemptible: bool,
    /// Username or UID (format: <name|uid>[:<group|gid>]) the container's
    /// process runs as, as docker's -u. The job's owner is who your token
    /// says you are.
    #[arg(long, short = 'u', value_name = "USER")]
    user: Option<String>,
    /// Give the container extended privileges (admins, unless the policy says otherwise).
    #[arg(long)]
    privileged: bool,
    /// Add a Linux capability (as docker's --cap-add).
    #[arg(long = "cap-add", value_name = "CAP")]
    cap_add: Vec<String>,
    /// Drop a Linux capability (as docker's --cap-drop; ALL for every one).
    #[arg(long = "cap-drop", value_name = "CAP")]
    cap_drop: Vec<String>,
    /// Add a host device, HOST[:CONTAINER[:PERMS]] (as docker's --device).
    #[arg(long = "device")]
    devices: Vec<String>,
    /// Network: bridge (default), host or none (as docker's --network).
    #[arg(long, value_parser = ["bridge", "host", "none"])]
    network: Option<String>,
    /// IPC namespace: private, shareable or host (as docker's --ipc).
    #[arg(long, value_parser = ["private", "shareable", "host"])]
    ipc: Option<String>,
    /// Gang job: N tasks of --gpus GPUs each, on distinct hosts, started
    /// together, with MASTER_ADDR/MASTER_PORT/WORLD_SIZE/NODE_RANK/RANK.
    #[arg(long, default_value_t = 0)]
    nodes: u32,
    /// Rendezvous port of a gang's rank 0 (MASTER_PORT; default 29500).
    #[arg(long, default_value_t = 0)]
    master_port: u32,
    /// Job array START-END[%MAX_RUNNING] (e.g. 0-99%8): one task per index,
    /// each with BERTH_ARRAY_INDEX.
    #[arg(long)]
    array: Option<String>,
    /// Image, then the command and its arguments.
    #[arg(required = true, num_args = 1..)]
    image_and_command: Vec<String>,
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

/// One look at a pulling job's transfer, shown as `berth image push` shows its own.
async fn show_pull(client: &Client, job: &str, view: &mut crate::commands::image::View) {
    let Ok(j) = client
        .jobs()
        .get_job(berth_proto::v1::GetJobRequest {
            job: job.to_string(),
        })
        .await
    else {
        return; // a progress line is not worth failing the run for
    };
    let j = j.into_inner().job.unwrap_or_default();
    if let Some(p) = j.pull {
        view.show(&berth_proto::v1::PushProgress {
            node: j.node,
            progress: Some(berth_proto::v1::TransferProgress {
                bytes_done: p.done_bytes,
                bytes_total: p.total_bytes,
                source: p.source,
                message: p.message,
                ..Default::default()
            }),
            error: String::new(),
        });
    }
}

pub async fn run(client: &Client, args: Args, spec: JobSpec, format: Format) -> Result<i32> {
    crate::commands::exec::check_terminal(args.tty && !args.dry_run)?;
    if args.dry_run {
        let name = args.name.clone().unwrap_or_default();
        crate::commands::explain::dry_run(client, spec, name, format).await?;
        return Ok(0);
    }
    // Watch before submitting so no transition of the new job can be missed.
    let mut events = if args.detach || args.wait {
        None
    } else {
        Some(
            client
                .events()
                .watch(WatchRequest::default())
                .await
                .map_err(status_message)?
                .into_inner(),
        )
    };
    let request = SubmitJobRequest {
        spec: Some(spec),
        name: args.name.clone().unwrap_or_default(),
        // Idempotency key: a retry of this very submit never makes a second job.
        request_id: format!("{:032x}", rand::random::<u128>()),
        dry_run: false,
    };
    let submitted = client
        .retry(|c| {
            let request = request.clone();
            async move { c.jobs().submit_job(request).await }
        })
        .await?;
    if !submitted.group_id.is_empty() {
        return group(client, &submitted.group_id, &submitted.tasks, args.detach).await;
    }
    let job = submitted.job.unwrap_or_default();
    if args.detach {
        println!("{}", job.id);
        return Ok(0);
    }
    eprintln!("berth: job {} ({}) submitted", job.id, job.name);
    let flow = async {
        match events.as_mut() {
            Some(events) => follow(client, &job, events, (args.tty, args.interactive)).await,
            None => outcome(client, &job.id).await,
        }
    };
    let Some(limit) = args.timeout else {
        return flow.await;
    };
    match tokio::time::timeout(limit.into(), flow).await {
        Ok(code) => code,
        Err(_) => {
            eprintln!(
                "berth: job {} did not finish within {limit}: stopping it",
                job.id
            );
            stop(client, &job.id).await?;
            Ok(124)
        }
    }
}

/// Attached: placement and pull progress on stderr, then the container's
/// output, then its exit code.
/// `attach`: (tty, stdin) for `-t`/`-i`; then the job's process is attached
/// instead of its logs followed.
async fn follow(
    client: &Client,
    job: &Job,
    events: &mut tonic::Streaming<berth_proto::v1::Event>,
    attach: (bool, bool),
) -> Result<i32> {
    let mut last = JobState::Unspecified;
    let mut interrupted = false;
    let mut has_container = false;
    // Image transfers are telemetry, not events: polled while pulling.
    let mut pull_view = crate::commands::image::View::new(crate::output::Format::Table);
    let mut pull_tick = tokio::time::interval(std::time::Duration::from_millis(500));
    // Follow the job until its container exists (or it ended without one).
    loop {
        tokio::select! {
            _ = pull_tick.tick(), if last == JobState::Pulling => {
                show_pull(client, &job.id, &mut pull_view).await;
            }
            ev = events.next() => {
                let Some(ev) = ev else { break };
                let Some(event::Kind::Job(j)) = ev.map_err(status_message)?.kind else { continue };
                if j.id != job.id { continue; }
                let st = state(&j);
                if st != last {
                    match st {
                        JobState::Queued => eprintln!("berth: queued (position {})", j.queue_position),
                        JobState::Placed => eprintln!(
                            "berth: placed on {} GPUs [{}]",
                            j.node,
                            j.gpus.iter().map(|g| g.index.to_string()).collect::<Vec<_>>().join(",")
                        ),
                        JobState::Pulling => eprintln!(
                            "berth: {} lacks {}: receiving it from a host that has it",
                            j.node,
                            j.spec.as_ref().map_or("", |s| s.image.as_str())
                        ),
                        _ => {}
                    }
                    if last == JobState::Pulling {
                        pull_view.finish();
                    }
                    last = st;
                }
                if !j.container_id.is_empty() || st.is_finished() {
                    has_container = !j.container_id.is_empty();
                    break;
                }
            }
            _ = tokio::signal::ctrl_c(), if !interrupted => {
                interrupted = true;
                stop(client, &job.id).await?;
            }
        }
    }
    // -i/-t: the job's own process, attached, this terminal its terminal.
    if has_container && (attach.0 || attach.1) {
        let start = berth_proto::v1::ExecStart {
            job: job.id.clone(),
            attach: true,
            tty: attach.0,
            stdin: attach.1,
            ..Default::default()
        };
        return crate::commands::exec::session(client, start).await;
    }
    // A job that ended without a container (e.g. its host port was taken)
    // has no output; skip to its outcome, which says why.
    if has_container {
        let logs = crate::commands::logs::stream(client, &job.id, true, 0);
        tokio::pin!(logs);
        loop {
            tokio::select! {
                r = &mut logs => { r?; break; }
                _ = tokio::signal::ctrl_c(), if !interrupted => {
                    interrupted = true;
                    stop(client, &job.id).await?;
                }
            }
        }
    }
    outcome(client, &job.id).await
}

/// Waits for the job; its exit code, or Berth's for a job that never ran.
async fn outcome(client: &Client, id: &str) -> Result<i32> {
    let done = client
        .jobs()
        .wait_job(WaitJobRequest {
            job: id.to_string(),
        })
        .await
        .map_err(status_message)?
        .into_inner();
    let finished = done.job.unwrap_or_default();
    match state(&finished) {
        JobState::Failed => {
            eprintln!("berth: job {} failed: {}", finished.id, finished.message);
            Ok(125)
        }
        JobState::Cancelled if finished.exit_code.is_none() => Ok(130),
        _ => Ok(done.exit_code),
    }
}

/// A gang or an array: `-d` prints the group id; attached, waits for every
/// task, prints each outcome, and exits with the first non-zero exit code.
async fn group(client: &Client, id: &str, tasks: &[Job], detach: bool) -> Result<i32> {
    if detach {
        println!("{id}");
        return Ok(0);
    }
    eprintln!(
        "berth: group {id} submitted: {} task(s), {} .. {} (berth logs TASK, berth explain {id})",
        tasks.len(),
        tasks.first().map_or("", |t| t.name.as_str()),
        tasks.last().map_or("", |t| t.name.as_str()),
    );
    // A gang's ranks stream their output, each line labelled with its
    // rank as `srun --label` does; an array's tasks (thousands, perhaps)
    // are summed up at the end instead.
    let gang = tasks
        .first()
        .and_then(|t| t.spec.as_ref())
        .is_some_and(|s| s.nodes > 1);
    let output = {
        let (client, tasks) = (client.clone(), tasks.to_vec());
        tokio::spawn(async move {
            if gang {
                crate::commands::logs::labelled(&client, &tasks, true, 0).await;
            }
        })
    };
    let mut jobs = client.jobs();
    let wait = jobs.wait_job(WaitJobRequest {
        job: id.to_string(),
    });
    let done = tokio::select! {
        r = wait => r.map_err(status_message)?.into_inner(),
        _ = tokio::signal::ctrl_c() => {
            stop(client, id).await?;
            return Ok(130);
        }
    };
    // The streams end with their containers; what is still in flight gets
    // a moment, not forever (a host that went away).
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), output).await;
    for t in &done.tasks {
        let outcome = match (state(t), t.exit_code) {
            (JobState::Failed, _) => format!("failed: {}", t.message),
            (st, Some(code)) => format!("{} (exit code {code})", st.word()),
            (st, None) => st.word().to_string(),
        };
        eprintln!(
            "berth: {} on {}: {outcome}",
            t.name,
            if t.node.is_empty() { "-" } else { &t.node }
        );
    }
    Ok(done.exit_code)
}

async fn stop(client: &Client, id: &str) -> Result<()> {
    eprintln!("berth: stopping job {id} (Ctrl-C again to leave it and detach)");
    client
        .jobs()
        .cancel_job(CancelJobRequest {
            job: id.to_string(),
        })
        .await
        .map_err(status_message)?;
    // A second Ctrl-C detaches.
    tokio::spawn(async {
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(130);
    });
    Ok(())
}
