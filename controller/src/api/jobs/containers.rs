//! JobService's container verbs — exec, cp (stat, from, to), commit, update —
//! proxied to the agent of the host the job runs (or ran) on. The
//! controller resolves the job and checks its state, then names the exact
//! container to the agent (`berth.internal.v1`); the agent does the docker
//! part, in that container only.

use std::pin::Pin;

use berth_proto::connect::Timed;
use berth_proto::internal::v1::agent_service_client::AgentServiceClient;
use berth_proto::internal::v1::{
    container_copy_to_input, container_exec_input, ContainerCommitRequest,
    ContainerCopyFromRequest, ContainerCopyToInput, ContainerCopyToStart, ContainerExecInput,
    ContainerExecStart, ContainerStatRequest, UpdateContainerRequest,
};
use berth_proto::v1::*;
use futures::{Stream, StreamExt};
use tonic::{Status, Streaming};

use crate::api::auth::{check, Action, Identity};
use crate::api::rest;
use crate::core::{agent_client, Controller};
use crate::state::{JobRecord, JobState};

/// The job `reference` names, and a client for its host's agent. With
/// `running`, the job must be running (exec); otherwise it must have had a
/// container (cp and commit work on a finished job's, as docker's do).
async fn agent_of(
    ctl: &Controller,
    who: &Identity,
    verb: &str,
    reference: &str,
    running: bool,
) -> Result<(JobRecord, AgentServiceClient<Timed>), Status> {
    ctl.read_barrier().await?;
    let job = ctl.resolve(reference)?;
    check(
        who,
        Action::OnJob {
            owner: &job.spec.user,
            verb,
        },
    )?;
    let ok = if running {
        job.state == JobState::Running
    } else {
        !job.container_id.is_empty()
    };
    if !ok {
        return Err(Status::failed_precondition(format!(
            "job {} is {}: {}",
            job.name,
            job.state.word(),
            if running {
                "exec needs a running container"
            } else {
                "it has no container (yet)"
            }
        )));
    }
    let client = client_for(ctl, &job)
        .await?
        .max_decoding_message_size(8 << 20);
    Ok((job, client))
}

/// A data-plane client for the agent of the host `job` is (or was) on.
pub async fn client_for(
    ctl: &Controller,
    job: &JobRecord,
) -> Result<AgentServiceClient<Timed>, Status> {
    let node = job.node.clone().unwrap_or_default();
    let addr = ctl
        .read(|s| s.nodes.get(&node).map(|n| n.agent_addr.clone()))
        .ok_or_else(|| Status::unavailable(format!("node {node} is unknown")))?;
    Ok(agent_client(&ctl.tls, &node, &addr).await?)
}

pub type ExecStream = Pin<Box<dyn Stream<Item = Result<ExecOutput, Status>> + Send>>;

pub async fn exec(
    ctl: &Controller,
    who: &Identity,
    mut inbound: Streaming<ExecInput>,
) -> Result<ExecStream, Status> {
    let Some(ExecInput {
        kind: Some(exec_input::Kind::Start(start)),
    }) = inbound.message().await?
    else {
        return Err(Status::invalid_argument("an exec starts with what to run"));
    };
    if start.command.is_empty() && !start.attach {
        return Err(Status::invalid_argument(
            "say what to run: berth exec JOB CMD [ARG...]",
        ));
    }
    let (job, mut client) = agent_of(ctl, who, "exec into", &start.job, true).await?;
    let first = ContainerExecInput {
        kind: Some(container_exec_input::Kind::Start(ContainerExecStart {
            container_id: job.container_id,
            job_id: job.id,
            command: start.command,
            tty: start.tty,
            stdin: start.stdin,
            env: start.env,
            workdir: start.workdir,
            user: start.user,
            rows: start.rows,
            cols: start.cols,
            attach: start.attach,
            requested_by: who.describe(),
        })),
    };
    // The rest of the session: stdin, resizes, end of input. A second
    // start means nothing and is dropped.
    let then = rest(inbound).filter_map(|m| {
        std::future::ready(
            match m.kind {
                Some(exec_input::Kind::Stdin(d)) => Some(container_exec_input::Kind::Stdin(d)),
                Some(exec_input::Kind::Resize(r)) => Some(container_exec_input::Kind::Resize(r)),
                Some(exec_input::Kind::CloseStdin(c)) => {
                    Some(container_exec_input::Kind::CloseStdin(c))
                }
                Some(exec_input::Kind::Start(_)) | None => None,
            }
            .map(|kind| ContainerExecInput { kind: Some(kind) }),
        )
    });
    let upstream = client
        .exec(futures::stream::iter([first]).chain(then))
        .await?
        .into_inner();
    Ok(Box::pin(upstream))
}

pub async fn stat(
    ctl: &Controller,
    who: &Identity,
    req: StatPathRequest,
) -> Result<StatPathResponse, Status> {
    let (job, mut client) = agent_of(ctl, who, "copy from", &req.job, false).await?;
    let r = client
        .stat_path(ContainerStatRequest {
            container_id: job.container_id,
            job_id: job.id,
            path: req.path,
        })
        .await?
        .into_inner();
    Ok(StatPathResponse {
        exists: r.exists,
        is_dir: r.is_dir,
        name: r.name,
        size: r.size,
    })
}

pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<CopyChunk, Status>> + Send>>;

pub async fn copy_from(
    ctl: &Controller,
    who: &Identity,
    req: CopyFromRequest,
) -> Result<ChunkStream, Status> {
    let (job, mut client) = agent_of(ctl, who, "copy from", &req.job, false).await?;
    let r = client
        .copy_from(ContainerCopyFromRequest {
            container_id: job.container_id,
            job_id: job.id,
            path: req.path,
            requested_by: who.describe(),
        })
        .await?;
    Ok(Box::pin(r.into_inner()))
}

pub async fn copy_to(
    ctl: &Controller,
    who: &Identity,
    mut inbound: Streaming<CopyToInput>,
) -> Result<CopyToResponse, Status> {
    let Some(CopyToInput {
        kind: Some(copy_to_input::Kind::Start(start)),
    }) = inbound.message().await?
    else {
        return Err(Status::invalid_argument(
            "a copy starts with the job and directory",
        ));
    };
    let (job, mut client) = agent_of(ctl, who, "copy into", &start.job, false).await?;
    let first = ContainerCopyToInput {
        kind: Some(container_copy_to_input::Kind::Start(ContainerCopyToStart {
            container_id: job.container_id,
            job_id: job.id,
            dir: start.dir,
            requested_by: who.describe(),
        })),
    };
    let data = rest(inbound).filter_map(|m| {
        std::future::ready(match m.kind {
            Some(copy_to_input::Kind::Data(d)) => Some(ContainerCopyToInput {
                kind: Some(container_copy_to_input::Kind::Data(d)),
            }),
            _ => None,
        })
    });
    client
        .copy_to(futures::stream::iter([first]).chain(data))
        .await?;
    Ok(CopyToResponse {})
}

pub async fn commit(
    ctl: &Controller,
    who: &Identity,
    req: CommitRequest,
) -> Result<CommitResponse, Status> {
    if req.image.trim().is_empty() {
        return Err(Status::invalid_argument(
            "say what to call the image: berth commit JOB REPOSITORY[:TAG]",
        ));
    }
    let (job, mut client) = agent_of(ctl, who, "commit", &req.job, false).await?;
    let r = client
        .commit(ContainerCommitRequest {
            container_id: job.container_id,
            job_id: job.id,
            image: req.image.clone(),
            comment: req.comment,
            no_pause: req.no_pause,
            requested_by: who.describe(),
        })
        .await?
        .into_inner();
    let node = job.node.unwrap_or_default();
    // Answered once the image table has it: `berth run IMAGE` next works.
    ctl.image_seen(&node, &req.image).await;
    Ok(CommitResponse {
        image_id: r.image_id,
        node,
    })
}
/// `docker update` of the running containers among `jobs`, on their hosts.
pub async fn update_limits(
    ctl: &Controller,
    jobs: &[JobRecord],
    memory_bytes: u64,
    nano_cpus: u64,
) -> Result<(), Status> {
    if memory_bytes == 0 && nano_cpus == 0 {
        return Ok(());
    }
    for job in jobs.iter().filter(|j| j.state == JobState::Running) {
        let mut client = client_for(ctl, job).await?;
        client
            .update_container(UpdateContainerRequest {
                job_id: job.id.clone(),
                container_id: job.container_id.clone(),
                memory_bytes,
                nano_cpus,
            })
            .await
            .map_err(|e| {
                Status::failed_precondition(format!(
                    "job {}: the docker daemon on {} refused the update: {}",
                    job.name,
                    job.node.as_deref().unwrap_or("?"),
                    e.message()
                ))
            })?;
    }
    Ok(())
}
