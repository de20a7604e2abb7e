//! What each identity may do: one pure function, `authorize`, and the
//! table of which roles may call each method at all. Handlers ask it about
//! the resource they resolved (a job's owner); the guard asks it about the
//! method before the handler runs.

use tonic::{Code, Status};

use super::{Identity, Role};

/// Priority above this needs an admin (`--max-user-priority`).
pub const DEFAULT_PRIORITY_CEILING: i32 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Calling a gRPC method (its full path), before anything is read.
    Call(&'a str),
    /// Acting on a job owned by `owner` (stop, update, logs, exec, cp,
    /// commit).
    OnJob { owner: &'a str, verb: &'a str },
    /// Submitting a job with this priority, where users may go up to
    /// `ceiling`.
    Submit { priority: i32, ceiling: i32 },
}

/// A refusal, and the rule that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub code: Code,
    pub message: String,
}

impl From<Denied> for Status {
    fn from(d: Denied) -> Status {
        Status::new(d.code, d.message)
    }
}

fn deny(message: String) -> Denied {
    Denied {
        code: Code::PermissionDenied,
        message,
    }
}

/// Who may call a method at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// No credentials (health checks).
    Anyone,
    /// Any authenticated caller (leader discovery, reflection).
    Authenticated,
    /// Raft: other controllers only.
    Controller,
    /// The agents' control plane: nodes only (under their own name).
    Node,
    /// A user with at least this role.
    User(Role),
}

/// The table: each method's `Need`, and whether it changes anything (the
/// audit log records those). Unknown methods need an admin.
pub fn method(path: &str) -> (Need, bool) {
    let (service, name) = path
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or((path, ""));
    use Need::*;
    match service {
        "grpc.health.v1.Health" => (Anyone, false),
        s if s.starts_with("grpc.reflection.") => (Authenticated, false),
        "berth.internal.v1.RaftService" => (Controller, false),
        "berth.internal.v1.ControlPlane" => match name {
            // The join token in the request is the credential.
            "Join" => (Anyone, true),
            "RenewCertificate" => (Node, true),
            _ => (Node, false),
        },
        "berth.v1.ControllerService" => match name {
            // Leader discovery, also for an agent that is joining (it has
            // no credentials yet): addresses and raft indexes only.
            "ListMembers" => (Anyone, false),
            _ => (User(Role::Admin), true),
        },
        "berth.v1.AccessService" => match name {
            "WhoAmI" | "GetPolicy" => (User(Role::Viewer), false),
            _ => (User(Role::Admin), true),
        },
        "berth.v1.JobService" => match name {
            "GetJob" | "ListJobs" | "WaitJob" | "ExplainJob" | "ListQuotas" => {
                (User(Role::Viewer), false)
            }
            "SetQuota" => (User(Role::Admin), true),
            // Reads of one's own job's data, checked per job by the handler.
            "JobLogs" | "StatPath" | "CopyFrom" => (User(Role::User), false),
            _ => (User(Role::User), true),
        },
        "berth.v1.NodeService" => match name {
            "ListNodes" => (User(Role::Viewer), false),
            // Cordon, drain, remove: the hosts are the admins'.
            _ => (User(Role::Admin), true),
        },
        "berth.v1.EventService" => (User(Role::Viewer), false),
        // Everyone's usage, as every job is visible to viewers.
        "berth.v1.UsageService" => (User(Role::Viewer), false),
        "berth.v1.ImageService" => match name {
            "ListImages" => (User(Role::Viewer), false),
            "SaveImage" => (User(Role::User), false),
            // Runs a Dockerfile on a host: a user's, checked against the
            // policy's root rule (RUN steps run as root).
            "BuildImage" => (User(Role::User), true),
            "RemoveImage" | "GcImages" => (User(Role::Admin), true),
            _ => (User(Role::User), true),
        },
        _ => (User(Role::Admin), true),
    }
}

/// May `id` (None: no credentials) do `action`?
pub fn authorize(id: &Identity, action: &Action<'_>) -> Result<(), Denied> {
    match *action {
        Action::Call(path) => admit(Some(id), path),
        Action::OnJob { owner, verb } => match id {
            Identity::User {
                role: Role::Admin, ..
            } => Ok(()),
            Identity::User {
                name,
                role: Role::User,
            } if name == owner => Ok(()),
            Identity::User {
                role: Role::Viewer,
                ..
            } => Err(deny(format!(
                "viewers cannot {verb} jobs (rule: jobs.owner-or-admin)"
            ))),
            Identity::User { .. } => Err(deny(format!(
                "only the job's owner ({owner}) or an admin may {verb} it (rule: jobs.owner-or-admin)"
            ))),
            other => Err(deny(format!(
                "{} cannot {verb} jobs (rule: jobs.owner-or-admin)",
                other.describe()
            ))),
        },
        Action::Submit { priority, ceiling } => {
            if priority > ceiling && !id.is_admin() {
                return Err(deny(format!(
                    "priority {priority} is above {ceiling}, which only admins may exceed (rule: jobs.priority-ceiling)"
                )));
            }
            Ok(())
        }
    }
}

/// The method check, also for callers with no credentials.
pub fn admit(id: Option<&Identity>, path: &str) -> Result<(), Denied> {
    let (need, _) = method(path);
    let Some(id) = id else {
        return match need {
            Need::Anyone => Ok(()),
            _ => Err(Denied {
                code: Code::Unauthenticated,
                message: "no credentials: set BERTH_TOKEN or the token in ~/.config/berth/config.toml (an admin mints one with `berth token create USER`)".into(),
            }),
        };
    };
    let ok = match (need, id) {
        (Need::Anyone | Need::Authenticated, _) => true,
        (Need::Controller, Identity::Controller(_)) => true,
        (Need::Node, Identity::Node(_)) => true,
        (Need::User(min), Identity::User { role, .. }) => *role >= min,
        _ => false,
    };
    if ok {
        return Ok(());
    }
    let who = id.describe();
    Err(deny(match need {
        Need::Controller => format!("{path} serves controllers only, not {who} (rule: raft.controllers-only)"),
        Need::Node => format!("{path} serves agents only, with their node certificate, not {who} (rule: control.nodes-only)"),
        Need::User(min) => format!(
            "{path} needs role {} or above; {who} (rule: api.roles)",
            min.word()
        ),
        _ => format!("{who} may not call {path}"),
    }))
}

#[cfg(test)]
mod tests;
