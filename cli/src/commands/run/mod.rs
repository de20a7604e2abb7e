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

mod args;
pub use args::{job_spec, Args};

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
