//! `berth.v1.ControllerService`: any controller says who the members are and
//! who leads, so clients and agents can find the leader from any address.

use std::sync::Arc;

use berth_proto::v1::controller_service_server::ControllerService;
use berth_proto::v1::{Member, MembersRequest, MembersResponse};
use tonic::{Request, Response, Status};

use crate::core::Controller;

pub struct Members(pub Arc<Controller>);

#[tonic::async_trait]
impl ControllerService for Members {
    async fn members(
        &self,
        _: Request<MembersRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        let raft = &self.0.raft;
        let status = raft.status();
        let members = raft
            .peers
            .iter()
            .map(|(&id, addr)| {
                let me = id == raft.id;
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
                }
            })
            .collect();
        Ok(Response::new(MembersResponse {
            self_id: raft.id,
            leader_id: status.leader,
            leader_addr: raft.peers.get(&status.leader).cloned().unwrap_or_default(),
            members,
        }))
    }
}
