//! `berth.v1.AccessService`: tokens, the mount and privilege policy, and
//! who the caller is. The guard already admitted the caller to the method
//! (admin for everything that changes something).

use std::sync::Arc;

use berth_proto::policy::Policy;
use berth_proto::v1::access_service_server::AccessService;
use berth_proto::v1::*;
use tonic::{Request, Response, Status};

use super::auth::guard::Access;
use super::auth::{caller, tokens, Role};
use crate::core::{convert, Controller};
use crate::state::{Command, TokenRecord};

pub struct AccessApi(pub Arc<Controller>, pub Arc<Access>);

/// Join tokens that do not say otherwise last a day (kubeadm's default).
const JOIN_TTL_MS: i64 = 24 * 3600 * 1000;

fn wire(t: &TokenRecord) -> Token {
    Token {
        id: t.id.clone(),
        user: t.user.clone(),
        role: t.role.clone(),
        created_ms: t.created_ms,
        expires_ms: t.expires_ms,
    }
}

#[tonic::async_trait]
impl AccessService for AccessApi {
    async fn who_am_i(
        &self,
        req: Request<WhoAmIRequest>,
    ) -> Result<Response<WhoAmIResponse>, Status> {
        let (kind, name, role) = caller(&req)?.parts();
        Ok(Response::new(WhoAmIResponse {
            kind: kind.into(),
            name,
            role: role.into(),
        }))
    }

    async fn create_token(
        &self,
        req: Request<CreateTokenRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        self.0.ensure_leader()?;
        let req = req.into_inner();
        let role = if req.role.is_empty() {
            "user"
        } else {
            req.role.as_str()
        };
        let join = role == "join";
        if !join && Role::parse(role).is_none() {
            return Err(Status::invalid_argument(format!(
                "role {role:?}: roles are admin, user, viewer (or join, for a node)"
            )));
        }
        if !join || !req.user.is_empty() {
            let what = if join { "node name" } else { "user name" };
            tokens::check_name(what, &req.user)?;
        }
        if req.ttl_ms < 0 {
            return Err(Status::invalid_argument("--expires must be positive"));
        }
        let now = convert::now_ms();
        let ttl = if join && req.ttl_ms == 0 {
            JOIN_TTL_MS
        } else {
            req.ttl_ms
        };
        let (id, secret) = tokens::mint();
        let rec = TokenRecord {
            id,
            user: req.user,
            role: role.to_string(),
            hash: tokens::hash(&secret),
            created_ms: now,
            expires_ms: if ttl == 0 { 0 } else { now.saturating_add(ttl) },
        };
        self.0.propose(Command::CreateToken(rec.clone())).await?;
        tracing::info!(id = %rec.id, user = %rec.user, role = %rec.role, "token created");
        Ok(Response::new(CreateTokenResponse {
            token: Some(wire(&rec)),
            secret,
        }))
    }

    async fn list_tokens(
        &self,
        _req: Request<ListTokensRequest>,
    ) -> Result<Response<ListTokensResponse>, Status> {
        self.0.read_barrier().await?;
        let tokens = self.0.read(|s| s.tokens.values().map(wire).collect());
        Ok(Response::new(ListTokensResponse { tokens }))
    }

    async fn revoke_token(
        &self,
        req: Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        self.0.ensure_leader()?;
        let which = req.into_inner().token;
        let matched: Vec<TokenRecord> = self.0.read(|s| {
            s.tokens
                .values()
                .filter(|t| t.id == which || (!which.is_empty() && t.user == which))
                .cloned()
                .collect()
        });
        if matched.is_empty() {
            return Err(Status::not_found(format!(
                "no token has id or user {which:?} (see `berth token list`)"
            )));
        }
        let ids = matched.iter().map(|t| t.id.clone()).collect();
        self.0.propose(Command::RevokeTokens { ids }).await?;
        Ok(Response::new(RevokeTokenResponse {
            revoked: matched.iter().map(wire).collect(),
        }))
    }

    async fn get_policy(
        &self,
        _req: Request<GetPolicyRequest>,
    ) -> Result<Response<GetPolicyResponse>, Status> {
        self.0.read_barrier().await?;
        let (policy, is_default) = self.0.read(|s| (s.policy_in_force(), s.policy.is_none()));
        Ok(Response::new(GetPolicyResponse {
            policy_toml: policy.to_toml(),
            is_default,
        }))
    }

    async fn set_policy(
        &self,
        req: Request<SetPolicyRequest>,
    ) -> Result<Response<SetPolicyResponse>, Status> {
        self.0.ensure_leader()?;
        let policy =
            Policy::from_toml(&req.into_inner().policy_toml).map_err(Status::invalid_argument)?;
        self.0.propose(Command::SetPolicy(policy.clone())).await?;
        Ok(Response::new(SetPolicyResponse {
            policy_toml: policy.to_toml(),
        }))
    }
}
