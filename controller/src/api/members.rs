//! `berth.v1.ControllerService`: any controller says who the members are and
//! who leads, so clients and agents can find the leader from any address;
//! the leader adds and removes members, and streams backups.

use std::sync::Arc;

use berth_proto::v1::controller_service_server::ControllerService;
use berth_proto::v1::{
    AddMemberRequest, AddMemberResponse, BackupChunk, BackupRequest, ListMembersRequest,
    ListMembersResponse, Member, Membership, RemoveMemberRequest, RemoveMemberResponse,
    TransferLeaderRequest, TransferLeaderResponse,
};
use tonic::{Request, Response, Status};

use crate::core::Controller;

pub struct Members(pub Arc<Controller>);

impl Members {
    fn view(&self) -> Option<Membership> {
        let raft = &self.0.raft;
        let status = raft.status();
        let peers = raft.peers();
        let members = peers
            .iter()
            .map(|(&id, addr)| {
                let me = id == raft.id;
                let suffrage = if status.learners.contains(&id) {
                    "learner"
                } else if status.voters.contains(&id) {
                    "voter"
                } else {
                    ""
                };
                Member {
                    id,
                    addr: addr.clone(),
                    role: if me {
                        status.role.clone()
                    } else {
                        String::new()
                    },
                    term: if me { status.term } else { 0 },
                    commit: if me { status.commit } else { 0 },
                    applied: if me { status.applied } else { 0 },
                    matched: status.matched.get(&id).copied().unwrap_or(0),
                    first_index: if me { status.first_index } else { 0 },
                    suffrage: suffrage.to_string(),
                }
            })
            .collect();
        Some(Membership {
            self_id: raft.id,
            leader_id: status.leader,
            leader_addr: peers.get(&status.leader).cloned().unwrap_or_default(),
            members,
            dashboard_url: self.0.dashboard_url.get().cloned().unwrap_or_default(),
        })
    }
}

/// Backup chunks: well under the message limits.
const BACKUP_CHUNK: usize = 1 << 20;

#[tonic::async_trait]
impl ControllerService for Members {
    type BackupStream = futures::stream::BoxStream<'static, Result<BackupChunk, Status>>;

    async fn backup(
        &self,
        _: Request<BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        let (data, summary) = self.0.backup().await?;
        tracing::info!(index = summary.index, bytes = summary.bytes, "backup taken");
        let chunks: Vec<Result<BackupChunk, Status>> = data
            .chunks(BACKUP_CHUNK)
            .enumerate()
            .map(|(i, c)| {
                let first = i == 0;
                Ok(BackupChunk {
                    data: c.to_vec(),
                    index: if first { summary.index } else { 0 },
                    total_bytes: if first { summary.bytes } else { 0 },
                    jobs: if first { summary.jobs as u32 } else { 0 },
                    nodes: if first { summary.nodes as u32 } else { 0 },
                })
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }

    async fn list_members(
        &self,
        _: Request<ListMembersRequest>,
    ) -> Result<Response<ListMembersResponse>, Status> {
        Ok(Response::new(ListMembersResponse {
            membership: self.view(),
        }))
    }

    async fn add_member(
        &self,
        req: Request<AddMemberRequest>,
    ) -> Result<Response<AddMemberResponse>, Status> {
        let r = req.into_inner();
        if r.addr.is_empty() {
            return Err(Status::invalid_argument(
                "the new controller's address is required",
            ));
        }
        tracing::info!(id = r.id, addr = %r.addr, "adding controller");
        self.0.add_member(r.id, r.addr).await?;
        Ok(Response::new(AddMemberResponse {
            membership: self.view(),
        }))
    }

    async fn transfer_leader(
        &self,
        req: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderResponse>, Status> {
        let target = req.into_inner().id;
        let start = std::time::Instant::now();
        let leader_id = self.0.transfer_leadership(target).await?;
        tracing::info!(leader = leader_id, "leadership handed over");
        Ok(Response::new(TransferLeaderResponse {
            leader_id,
            took_ms: start.elapsed().as_millis() as u64,
        }))
    }

    async fn remove_member(
        &self,
        req: Request<RemoveMemberRequest>,
    ) -> Result<Response<RemoveMemberResponse>, Status> {
        let id = req.into_inner().id;
        tracing::info!(id, "removing controller");
        self.0.remove_member(id).await?;
        Ok(Response::new(RemoveMemberResponse {
            membership: self.view(),
        }))
    }
}
