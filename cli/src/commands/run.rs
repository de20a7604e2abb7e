//! `berth run`: submit, then (unless -d) follow the job like `docker run`:
//! placement on stderr, the container's output on stdout/stderr, and the
//! container's exit code as ours.

use anyhow::Result;
use berth_proto::v1::{
    event, CancelJobRequest, JobSpec, JobState, SubmitJobRequest, WaitJobRequest, WatchRequest,
};
use futures::StreamExt;

use crate::client::{status_message, Client};
use crate::output::state;
use crate::spec;

#[derive(clap::Args)]
#[command(trailing_var_arg = true)]
pub struct Args {
    /// Number of whole GPUs, all on one host.
    #[arg(long, default_value_t = 0)]
    gpus: u32,
    /// Bind mount SRC:DST[:ro] (SRC is a path on the host the job lands on).
    #[arg(short = 'v', long = "volume")]
    volumes: Vec<String>,
    /// Publish a port: [IP:]HOST:CONTAINER[/PROTO].
    #[arg(short = 'p', long = "publish")]
    ports: Vec<String>,
    /// Set an environment variable: KEY=VALUE (or KEY to pass the local value).
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Size of /dev/shm, e.g. 8g (PyTorch data loaders need more than docker's 64m).
    #[arg(long)]
    shm_size: Option<String>,
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
    /// Image, then the command and its arguments.
    #[arg(required = true, num_args = 1..)]
    image_and_command: Vec<String>,
}

/// Builds the spec; every malformed flag is refused here, before any request.
pub fn job_spec(args: &Args) -> Result<JobSpec> {
    let mut it = args.image_and_command.iter();
    let image = it.next().cloned().unwrap_or_default();
    let mut env = Vec::new();
    for e in &args.env {
        env.extend(spec::env(e)?);
    }
    Ok(JobSpec {
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
        gpus: args.gpus,
        workdir: args.workdir.clone().unwrap_or_default(),
        tty: false,
    })
}

pub async fn run(client: &Client, args: Args, spec: JobSpec) -> Result<i32> {
    // Watch before submitting so no transition of the new job can be missed.
    let mut events = if args.detach {
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
    let job = client
        .jobs()
        .submit_job(SubmitJobRequest {
            spec: Some(spec),
            name: args.name.clone().unwrap_or_default(),
            // Idempotency key: a retry of this very submit never makes a second job.
            request_id: format!("{:032x}", rand::random::<u128>()),
        })
        .await
        .map_err(status_message)?
        .into_inner()
        .job
        .unwrap_or_default();
    if args.detach {
        println!("{}", job.id);
        return Ok(0);
    }
    eprintln!("berth: job {} ({}) submitted", job.id, job.name);
    let mut last = JobState::Unspecified;
    let mut interrupted = false;
    let mut has_container = false;
    let events = events.as_mut().expect("attached");
    // Follow the job until its container exists (or it ended without one).
    loop {
        tokio::select! {
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
                        _ => {}
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
    let done = client
        .jobs()
        .wait_job(WaitJobRequest {
            job: job.id.clone(),
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
