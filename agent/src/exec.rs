//! `docker exec` sessions for the controller (`berth exec`), and attaching
//! to a job's own process (`berth run -it`): the first message names the
//! container and what to do; then stdin and terminal resizes flow in while
//! output flows out; the last message is the exit code.

use std::future::Future;
use std::pin::Pin;

use berth_proto::internal::v1::{container_exec_input, ContainerExecInput};
use berth_proto::v1::{exec_output, ExecOutput};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;
use tonic::{Status, Streaming};

use crate::agent::Agent;
use crate::runtime::ExecSpec;

pub type OutputStream = Pin<Box<dyn Stream<Item = Result<ExecOutput, Status>> + Send>>;

pub async fn run(
    agent: &Agent,
    mut inbound: Streaming<ContainerExecInput>,
) -> Result<OutputStream, Status> {
    let Some(ContainerExecInput {
        kind: Some(container_exec_input::Kind::Start(start)),
    }) = inbound.message().await?
    else {
        return Err(Status::invalid_argument("an exec starts with what to run"));
    };
    let container = berth_container(agent, &start.container_id, &start.job_id, true).await;
    if let Some(a) = &agent.cfg.audit {
        a.session("exec", &start.requested_by, &start.job_id, &container);
    }
    let container = container?;
    let runtime = agent.runtime.clone();
    if start.attach {
        let session = runtime.attach(&container).await?;
        if start.tty && start.rows > 0 && start.cols > 0 {
            let _ = runtime.resize_tty(&container, start.rows, start.cols).await;
        }
        tracing::info!(job = %start.job_id, "attached");
        let (rt, id) = (runtime.clone(), container.clone());
        pump_input(inbound, session.input, move |rows, cols| {
            let (rt, id) = (rt.clone(), id.clone());
            async move {
                let _ = rt.resize_tty(&id, rows, cols).await;
            }
        });
        // The job's exit code: its container's, once it stopped.
        let (cluster, node) = (
            agent.cluster_id.lock().unwrap().clone(),
            agent.cfg.node.clone(),
        );
        let rt = runtime.clone();
        let exit = async move {
            loop {
                let c = rt.list(&cluster, &node).await?;
                match c.iter().find(|c| c.id == container) {
                    Some(c) if c.is_running() => {}
                    Some(c) => return Ok(Some(i64::from(c.exit_code))),
                    None => return Ok(None),
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        };
        return Ok(output_then_exit(session.output, exit));
    }
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
    let session = runtime.exec(&container, &spec).await?;
    tracing::info!(job = %start.job_id, command = ?spec.command, tty = spec.tty, "exec");
    let (rt, id) = (runtime.clone(), session.id.clone());
    pump_input(inbound, session.input, move |rows, cols| {
        let (rt, id) = (rt.clone(), id.clone());
        async move {
            let _ = rt.exec_resize(&id, rows, cols).await;
        }
    });
    let id = session.id.clone();
    // The output ends a moment before the daemon records the exit code.
    let exit = async move {
        loop {
            if let Some(code) = runtime.exec_exit_code(&id).await? {
                return Ok(Some(code));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    Ok(output_then_exit(session.output, exit))
}

/// Stdin bytes into the command, resizes to `resize`; ends with the
/// client's stream, and the command then reads end-of-file.
fn pump_input<F, R>(
    mut inbound: Streaming<ContainerExecInput>,
    mut input: Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    resize: F,
) where
    F: Fn(u32, u32) -> R + Send + 'static,
    R: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        while let Ok(Some(msg)) = inbound.message().await {
            match msg.kind {
                Some(container_exec_input::Kind::Stdin(data)) => {
                    if input.write_all(&data).await.is_err() || input.flush().await.is_err() {
                        break;
                    }
                }
                Some(container_exec_input::Kind::Resize(size)) => {
                    resize(size.rows, size.cols).await
                }
                Some(container_exec_input::Kind::CloseStdin(_)) => break,
                Some(container_exec_input::Kind::Start(_)) | None => {}
            }
        }
        let _ = input.shutdown().await;
    });
}

/// The output as it comes, then the exit code (`None`: the container is
/// gone, reported as -1).
fn output_then_exit(
    mut output: BoxStream<'static, crate::Result<(i32, bytes::Bytes)>>,
    exit: impl Future<Output = crate::Result<Option<i64>>> + Send + 'static,
) -> OutputStream {
    Box::pin(async_stream::stream! {
        while let Some(item) = output.next().await {
            match item {
                Ok((2, data)) => yield Ok(ExecOutput { kind: Some(exec_output::Kind::Stderr(data.to_vec())) }),
                Ok((_, data)) => yield Ok(ExecOutput { kind: Some(exec_output::Kind::Stdout(data.to_vec())) }),
                Err(e) => { yield Err(Status::from(e)); return; }
            }
        }
        match exit.await {
            Ok(code) => yield Ok(ExecOutput { kind: Some(exec_output::Kind::ExitCode(code.unwrap_or(-1) as i32)) }),
            Err(e) => yield Err(Status::from(e)),
        }
    })
}

/// `container` (the id the controller names), checked to be a Berth
/// container of this node and cluster, of `job` when one is named, and
/// running when asked: the agent acts on no other container, whatever a
/// caller sends.
pub async fn berth_container(
    agent: &Agent,
    container: &str,
    job: &str,
    running: bool,
) -> Result<String, Status> {
    if container.is_empty() {
        return Err(Status::invalid_argument("name the container"));
    }
    let cluster = agent.cluster_id.lock().unwrap().clone();
    let found = agent
        .runtime
        .list(&cluster, &agent.cfg.node)
        .await?
        .into_iter()
        .find(|c| c.id == container);
    let short = &container[..12.min(container.len())];
    let Some(c) = found else {
        return Err(Status::not_found(format!(
            "container {short} is not a Berth container of node {} (it is gone, or never was)",
            agent.cfg.node
        )));
    };
    if !job.is_empty() && c.job_id != job {
        return Err(Status::permission_denied(format!(
            "container {short} belongs to job {}, not {job}",
            c.job_id
        )));
    }
    if running && !c.is_running() {
        return Err(Status::failed_precondition(format!(
            "the container of job {} is {}, not running",
            c.job_id,
            c.state.word()
        )));
    }
    Ok(c.id)
}
