//! Who is calling, and what they may do.
//!
//! - `guard`: the one place a request is authenticated — from the TLS peer
//!   certificate (controllers, nodes) or a bearer token (users) — and
//!   admitted to a method; it hands handlers a typed `Identity` and writes
//!   the audit record of every mutating request with its outcome.
//! - `rules`: the pure `authorize(identity, action)`, with table tests.
//! - `tokens`: minting and checking tokens (only hashes are replicated).
//! - `audit`: the JSON-lines audit log.
//! - `redact`: what users see of other users' jobs.
//!
//! Handlers never parse credentials: they call `caller(&request)` and ask
//! `rules::authorize` about the resource they resolved.

pub mod audit;
pub mod bootstrap;
pub mod guard;
pub mod redact;
pub mod rules;
pub mod tokens;

use tonic::{Request, Status};

pub use rules::{authorize, Action, Denied};

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    User,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "user" => Some(Role::User),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
            Role::Viewer => "viewer",
        }
    }
}

/// Who a request authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Controller(u64),
    Node(String),
    User { name: String, role: Role },
}

impl Identity {
    pub fn describe(&self) -> String {
        match self {
            Identity::Controller(id) => format!("controller {id}"),
            Identity::Node(n) => format!("node {n}"),
            Identity::User { name, role } => format!("user {name} ({})", role.word()),
        }
    }

    /// (kind, name, role) as the audit log and `WhoAmI` show them.
    pub fn parts(&self) -> (&'static str, String, &'static str) {
        match self {
            Identity::Controller(id) => ("controller", id.to_string(), ""),
            Identity::Node(n) => ("node", n.clone(), ""),
            Identity::User { name, role } => ("user", name.clone(), role.word()),
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Identity::User {
                role: Role::Admin,
                ..
            }
        )
    }

    /// A user's name and role; `None` for controllers and nodes.
    pub fn user(&self) -> Option<(&str, Role)> {
        match self {
            Identity::User { name, role } => Some((name, *role)),
            _ => None,
        }
    }
}

/// The identity the guard attached to `req`. A request that reached a
/// handler without one was routed around the guard: refuse it.
pub fn caller<T>(req: &Request<T>) -> Result<Identity, Status> {
    req.extensions()
        .get::<Identity>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no credentials"))
}

/// `authorize`, as a gRPC status.
pub fn check(id: &Identity, action: Action<'_>) -> Result<(), Status> {
    authorize(id, &action).map_err(Status::from)
}
