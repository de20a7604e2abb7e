//! `docker exec` sessions for the controller (`berth exec`): the first
//! message names the job and the command; then stdin and terminal resizes
//! flow in while output flows out; the last message is the exit code.

use std::pin::Pin;

use berth_proto::v1::{exec_input, exec_output, ExecInput, ExecOutput};
use futures::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;
use tonic::{Status, Streaming};

use crate::agent::Agent;
use crate::runtime::ExecSpec;

pub type OutputStream = Pin<Box<dyn Stream<Item = Result<ExecOutput, Status>> + Send>>;

pub async fn run(agent: &Agent, mut inbound: Streaming<ExecInput>) -> Result<OutputStream, Status> {
    let Some(ExecInput {
        kind: Some(exec_input::Kind::Start(start)),
    }) = inbound.message().await?
    else {
        return Err(Status::invalid_argument("an exec starts with what to run"));
    };
    let container = container_of(agent, &start.job, true).await?;
    let spec = ExecSpec {
        command: start.command,
        tty: start.tty,
        stdin: start.stdin,
        env: start.env,
        workdir: start.workdir,
        user: start.user,
        rows: start.rows,
        cols: start.cols,
    };
    let runtime = agent.runtime.clone();
    let session = runtime.exec(&container, &spec).await?;
    tracing::info!(job = %start.job, command = ?spec.command, tty = spec.tty, "exec");
    let id = session.id.clone();
    // Input: stdin bytes into the command, resizes to the daemon. Ends with
    // the client's stream; the command then reads end-of-file.
    let (mut input, resize) = (session.input, runtime.clone());
    let resize_id = id.clone();
    tokio::spawn(async move {
        while let Ok(Some(msg)) = inbound.message().await {
            match msg.kind {
                Some(exec_input::Kind::Stdin(data)) => {
                    if input.write_all(&data).await.is_err() || input.flush().await.is_err() {
                        break;
                    }
                }
                Some(exec_input::Kind::Resize(size)) => {
                    let _ = resize.exec_resize(&resize_id, size.rows, size.cols).await;
                }
                Some(exec_input::Kind::CloseStdin(_)) => break,
                Some(exec_input::Kind::Start(_)) | None => {}
            }
        }
        let _ = input.shutdown().await;
    });
    let output = session.output;
    let out = async_stream::stream! {
        let mut output = output;
        while let Some(item) = output.next().await {
            match item {
                Ok((2, data)) => yield Ok(ExecOutput { kind: Some(exec_output::Kind::Stderr(data.to_vec())) }),
                Ok((_, data)) => yield Ok(ExecOutput { kind: Some(exec_output::Kind::Stdout(data.to_vec())) }),
                Err(e) => { yield Err(Status::from(e)); return; }
            }
        }
        // The output ends a moment before the daemon records the exit code.
        let code = loop {
            match runtime.exec_exit_code(&id).await {
                Ok(Some(code)) => break code,
                Ok(None) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                Err(e) => { yield Err(Status::from(e)); return; }
            }
        };
        yield Ok(ExecOutput { kind: Some(exec_output::Kind::ExitCode(code as i32)) });
    };
    Ok(Box::pin(out))
}

/// The container of `job` (a job id) on this node: its running one, or
/// with `running` false, the newest of any state (cp and commit work on a
/// finished job's container too, as docker's do).
pub async fn container_of(agent: &Agent, job: &str, running: bool) -> Result<String, Status> {
    let cluster = agent.cluster_id.lock().unwrap().clone();
    let mut containers: Vec<_> = agent
        .runtime
        .list(&cluster, &agent.cfg.node)
        .await?
        .into_iter()
        .filter(|c| c.job_id == job)
        .collect();
    containers.sort_by_key(|c| (c.is_running(), c.attempt));
    containers
        .pop()
        .filter(|c| c.is_running() || !running)
        .map(|c| c.id)
        .ok_or_else(|| {
            Status::failed_precondition(format!(
                "job {job} has no {}container on this node",
                if running { "running " } else { "" }
            ))
        })
}
