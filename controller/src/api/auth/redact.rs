//! What a caller sees of jobs that are not theirs: who owns it, where and
//! how it runs — but not its environment, command or entrypoint, where
//! people put tokens and passwords. Admins see everything; a user sees its
//! own jobs whole.

use berth_proto::v1::{Job, JobSpec};

use super::Identity;

pub const REDACTED: &str = "<redacted>";

/// Whether `id` sees `owner`'s jobs whole.
pub fn sees_all_of(id: &Identity, owner: &str) -> bool {
    match id {
        Identity::User { name, role } => {
            *role == super::Role::Admin || (name == owner && *role != super::Role::Viewer)
        }
        _ => false,
    }
}

pub fn spec(id: &Identity, spec: &mut JobSpec) {
    if sees_all_of(id, &spec.user) {
        return;
    }
    let hide = |v: &mut Vec<String>| {
        if !v.is_empty() {
            *v = vec![REDACTED.to_string()];
        }
    };
    // Keep the names: KEY=<redacted>. Values are the secrets.
    for e in &mut spec.env {
        if let Some((k, _)) = e.split_once('=') {
            *e = format!("{k}={REDACTED}");
        }
    }
    hide(&mut spec.command);
    hide(&mut spec.entrypoint);
}

pub fn job(id: &Identity, job: &mut Job) {
    if let Some(s) = job.spec.as_mut() {
        spec(id, s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::auth::Role;

    #[test]
    fn others_see_names_not_values() {
        let mut s = JobSpec {
            user: "alice".into(),
            env: vec!["WANDB_API_KEY=abc".into()],
            command: vec!["train".into(), "--secret=x".into()],
            ..Default::default()
        };
        let bob = Identity::User {
            name: "bob".into(),
            role: Role::User,
        };
        spec(&bob, &mut s);
        assert_eq!(s.env, vec!["WANDB_API_KEY=<redacted>"]);
        assert_eq!(s.command, vec![REDACTED]);
        let mut own = JobSpec {
            user: "bob".into(),
            env: vec!["A=1".into()],
            ..Default::default()
        };
        spec(&bob, &mut own);
        assert_eq!(own.env, vec!["A=1"]);
    }
}
