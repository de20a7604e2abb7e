//! `berth logs [-f]`: a job's container output, proxied from its agent.
//! Followed, it goes on through restarts: each attempt is a new container
//! (possibly on another host), so when one container's stream ends the
//! job is watched for its next attempt's container, as `docker logs -f` of
//! a restarting container goes on.

use crate::api::auth::{check, Action, Identity};
use std::pin::Pin;
use std::sync::Arc;

use berth_proto::internal::v1::ContainerLogsRequest;
use berth_proto::v1::*;
use futures::{Stream, StreamExt};
use tonic::Status;

use super::containers::client_for;
use super::wait_until;
use crate::core::Controller;
use crate::state::JobRecord;

pub type LogStream = Pin<Box<dyn Stream<Item = Result<LogChunk, Status>> + Send>>;

pub async fn job_logs(
    ctl: Arc<Controller>,
    who: &Identity,
    req: JobLogsRequest,
) -> Result<LogStream, Status> {
    ctl.read_barrier().await?;
    let mut job = ctl.resolve(&req.job)?;
    check(
        who,
        Action::OnJob {
            owner: &job.spec.user,
            verb: "read the logs of",
        },
    )?;
    if req.follow {
        // A followed job's logs begin once its container exists.
        job = wait_until(&ctl, &job.id, |j| {
            !j.container_id.is_empty() || j.state.is_finished()
        })
        .await?;
    }
    if job.container_id.is_empty() {
        return Err(Status::failed_precondition(format!(
            "job {} is {} and has no container yet, so no logs",
            job.name,
            job.state.word()
        )));
    }
    let first = attempt_logs(&ctl, &job, req.follow, req.tail).await?;
    if !req.follow {
        return Ok(first);
    }
    let out = async_stream::try_stream! {
        let mut upstream = first;
        loop {
            while let Some(chunk) = upstream.next().await {
                yield chunk?;
            }
            // This attempt's container has ended (or its agent's stream
            // did): go on with the next attempt's, if its policy brings one.
            let attempt = job.attempt();
            job = wait_until(&ctl, &job.id, |j| {
                j.state.is_finished() || (j.attempt() != attempt && !j.container_id.is_empty())
            })
            .await?;
            if job.attempt() == attempt || job.container_id.is_empty() {
                break;
            }
            upstream = attempt_logs(&ctl, &job, true, 0).await?;
        }
    };
    Ok(Box::pin(out))
}

/// One attempt's container logs, from the agent of its host.
async fn attempt_logs(
    ctl: &Controller,
    job: &JobRecord,
    follow: bool,
    tail: u32,
) -> Result<LogStream, Status> {
    let mut client = client_for(ctl, job).await?;
    let upstream = client
        .container_logs(ContainerLogsRequest {
            job_id: job.id.clone(),
            follow,
            tail,
            container_id: job.container_id.clone(),
        })
        .await
        .map_err(|s| match s.code() {
            tonic::Code::NotFound if job.state.is_finished() => Status::failed_precondition(format!(
                "job {} finished and its container is gone (removed after its host's --container-retention, or by hand), and its logs with it; keep them longer with berth-agent --container-retention, or have the job write them to a mount",
                job.name
            )),
            _ => s,
        })?
        .into_inner();
    let attempt = job.attempt();
    Ok(Box::pin(upstream.map(move |chunk| {
        chunk.map(|c| LogChunk {
            stream: c.stream,
            data: c.data,
            attempt,
        })
    })))
}
