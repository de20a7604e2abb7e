//! `berth cp` and `berth commit` on this host, for the controller: a path's
//! stat, a tar of a path, a tar extracted into a directory, a commit — each
//! in the container the controller names (`exec::berth_container`).

use std::pin::Pin;

use berth_proto::internal::v1::{
    container_copy_to_input, ContainerCommitRequest, ContainerCommitResponse,
    ContainerCopyFromRequest, ContainerCopyToInput, ContainerStatRequest, ContainerStatResponse,
};
use berth_proto::v1::CopyChunk;
use futures::{Stream, StreamExt};
use tonic::{Status, Streaming};

use crate::agent::Agent;
use crate::exec::berth_container;

pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<CopyChunk, Status>> + Send>>;

pub async fn stat(
    agent: &Agent,
    req: ContainerStatRequest,
) -> Result<ContainerStatResponse, Status> {
    let container = berth_container(agent, &req.container_id, &req.job_id, false).await?;
    Ok(
        match agent.runtime.path_stat(&container, &req.path).await? {
            Some(s) => ContainerStatResponse {
                exists: true,
                is_dir: s.is_dir,
                name: s.name,
                size: s.size,
            },
            None => ContainerStatResponse::default(),
        },
    )
}

pub async fn copy_from(
    agent: &Agent,
    req: ContainerCopyFromRequest,
) -> Result<ChunkStream, Status> {
    let container = berth_container(agent, &req.container_id, &req.job_id, false).await;
    if let Some(a) = &agent.cfg.audit {
        a.session("cp-from", &req.requested_by, &req.job_id, &container);
    }
    let container = container?;
    if agent
        .runtime
        .path_stat(&container, &req.path)
        .await?
        .is_none()
    {
        return Err(Status::not_found(format!(
            "no such file or directory in job {}: {}",
            req.job_id, req.path
        )));
    }
    tracing::info!(job = %req.job_id, path = %req.path, "copying out of a container");
    let out = agent.runtime.copy_from(&container, &req.path).map(|r| {
        r.map(|data| CopyChunk {
            data: data.to_vec(),
        })
        .map_err(Status::from)
    });
    Ok(Box::pin(out))
}

pub async fn copy_to(
    agent: &Agent,
    mut inbound: Streaming<ContainerCopyToInput>,
) -> Result<(), Status> {
    let Some(ContainerCopyToInput {
        kind: Some(container_copy_to_input::Kind::Start(start)),
    }) = inbound.message().await?
    else {
        return Err(Status::invalid_argument(
            "a copy starts with the container and directory",
        ));
    };
    let container = berth_container(agent, &start.container_id, &start.job_id, false).await;
    if let Some(a) = &agent.cfg.audit {
        a.session("cp-to", &start.requested_by, &start.job_id, &container);
    }
    let container = container?;
    tracing::info!(job = %start.job_id, dir = %start.dir, "copying into a container");
    // A client that goes away mid-stream aborts the upload: docker then
    // extracts nothing more.
    let tar = inbound
        .map(|m| match m {
            Ok(ContainerCopyToInput {
                kind: Some(container_copy_to_input::Kind::Data(d)),
            }) => Ok(bytes::Bytes::from(d)),
            Ok(_) => Ok(bytes::Bytes::new()),
            Err(e) => Err(std::io::Error::other(e.message().to_string())),
        })
        .boxed();
    agent.runtime.copy_to(&container, &start.dir, tar).await?;
    Ok(())
}

pub async fn commit(
    agent: &Agent,
    req: ContainerCommitRequest,
) -> Result<ContainerCommitResponse, Status> {
    let container = berth_container(agent, &req.container_id, &req.job_id, false).await;
    if let Some(a) = &agent.cfg.audit {
        a.session("commit", &req.requested_by, &req.job_id, &container);
    }
    let container = container?;
    let (repo, tag) = split_reference(&req.image);
    let id = agent
        .runtime
        .commit(&container, repo, tag, &req.comment, !req.no_pause)
        .await?;
    tracing::info!(job = %req.job_id, image = %req.image, %id, "committed");
    Ok(ContainerCommitResponse { image_id: id })
}

/// "repo[:tag]" → (repo, tag), ":latest" by default; a registry port
/// ("host:5000/repo") is not a tag.
fn split_reference(r: &str) -> (&str, &str) {
    match r.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (r, "latest"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn references_split_like_docker() {
        use super::split_reference as s;
        assert_eq!(s("train:v2"), ("train", "v2"));
        assert_eq!(s("train"), ("train", "latest"));
        assert_eq!(s("host:5000/lab/train"), ("host:5000/lab/train", "latest"));
        assert_eq!(s("host:5000/lab/train:v1"), ("host:5000/lab/train", "v1"));
    }
}
