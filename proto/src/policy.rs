//! What a job may ask of a host: which host paths it may mount, which host
//! ports it may publish, and which privileges each role may request. The
//! admins' policy lives in the replicated state (`berth policy set`); the
//! controller checks it at submit and the agent again before it creates a
//! container, because an agent must not trust that the controller did.
//!
//! Some paths no policy can open (`BUILT_IN_DENY`): a mount of one of them,
//! of anything under one, or of any directory above one (`/var` exposes
//! `/var/run/docker.sock`) is refused for every role. Paths are compared
//! after normalising (`normalize`); a `..` component is refused outright,
//! because only the host can resolve it (and the agent resolves symlinks
//! on the host before its own check).

use serde::{Deserialize, Serialize};

use crate::v1::JobSpec;

/// Host paths that no mount may reach, for any role.
pub const BUILT_IN_DENY: [&str; 9] = [
    "/",
    "/etc",
    "/root",
    "/boot",
    "/proc",
    "/sys",
    "/dev",
    "/var/run/docker.sock",
    "/run/docker.sock",
];

/// The roles a token or certificate gives a user.
pub const ROLES: [&str; 3] = ["admin", "user", "viewer"];

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    pub mounts: Mounts,
    pub ports: Ports,
    pub privileges: Privileges,
}

/// Host path prefixes a `user` may bind. `{user}` stands for the job's
/// owner; a `:ro` suffix allows read-only mounts only. Admins may mount
/// anything outside the built-in deny list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mounts {
    pub allow: Vec<String>,
}

/// Host ports a `user` may publish (inclusive). Admins may publish any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ports {
    pub min: u32,
    pub max: u32,
}

/// For each privilege, the roles that may ask for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Privileges {
    /// `--privileged`.
    pub privileged: Vec<String>,
    /// `--cap-add`.
    pub cap_add: Vec<String>,
    /// `--device`.
    pub device: Vec<String>,
    /// `--network host`.
    pub network_host: Vec<String>,
    /// The host network for a gang (`--nodes N`), which is its default:
    /// its ranks must reach each other across hosts (NCCL).
    pub gang_network_host: Vec<String>,
    /// `--ipc host`.
    pub ipc_host: Vec<String>,
    /// Running as root: `-u 0`, `-u root`, or no `-u` (most images' default).
    pub root: Vec<String>,
}

impl Default for Mounts {
    fn default() -> Self {
        Mounts {
            allow: vec!["/home/{user}".into(), "/tmp".into()],
        }
    }
}

impl Default for Ports {
    fn default() -> Self {
        Ports {
            min: 1024,
            max: 65535,
        }
    }
}

impl Default for Privileges {
    fn default() -> Self {
        let admin = || vec!["admin".to_string()];
        Privileges {
            privileged: admin(),
            cap_add: admin(),
            device: admin(),
            network_host: admin(),
            gang_network_host: vec!["admin".into(), "user".into()],
            ipc_host: admin(),
            // Docker's default: most images run as root.
            root: vec!["admin".into(), "user".into()],
        }
    }
}

/// Why a job breaks the policy: the rule, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy rule {rule}: {message}")]
pub struct Violation {
    pub rule: &'static str,
    pub message: String,
}

fn violation(rule: &'static str, message: String) -> Violation {
    Violation { rule, message }
}

/// `path` as an absolute path with no `.`, empty or trailing components.
/// A `..` component is refused: resolving it needs the host's file system.
pub fn normalize(path: &str) -> Result<String, Violation> {
    if !path.starts_with('/') {
        return Err(violation(
            "mounts.absolute",
            format!("host path {path:?} must be absolute"),
        ));
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(violation(
                    "mounts.no-dotdot",
                    format!("host path {path:?} has a '..' component; give the path itself"),
                ))
            }
            p if p.contains('\0') => {
                return Err(violation(
                    "mounts.absolute",
                    format!("host path {path:?} has a NUL byte"),
                ))
            }
            p => parts.push(p),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// `path` is `base` or under it (both normalised).
pub fn is_within(path: &str, base: &str) -> bool {
    base == "/" || path == base || path.strip_prefix(base).is_some_and(|r| r.starts_with('/'))
}

impl Policy {
    pub fn from_toml(text: &str) -> Result<Policy, String> {
        let p: Policy = toml::from_str(text).map_err(|e| format!("policy: {e}"))?;
        p.check_self()?;
        Ok(p)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// A policy that names unknown roles or a bad range is a typo, not a rule.
    fn check_self(&self) -> Result<(), String> {
        let p = &self.privileges;
        for (what, roles) in [
            ("privileged", &p.privileged),
            ("cap_add", &p.cap_add),
            ("device", &p.device),
            ("network_host", &p.network_host),
            ("gang_network_host", &p.gang_network_host),
            ("ipc_host", &p.ipc_host),
            ("root", &p.root),
        ] {
            if let Some(r) = roles.iter().find(|r| !ROLES.contains(&r.as_str())) {
                return Err(format!(
                    "policy: privileges.{what} names role {r:?}; roles are admin, user, viewer"
                ));
            }
        }
        if self.ports.min > self.ports.max || self.ports.max > 65535 {
            return Err(format!(
                "policy: ports {}..{} is not a range within 0..65535",
                self.ports.min, self.ports.max
            ));
        }
        for a in &self.mounts.allow {
            let prefix = a.strip_suffix(":ro").unwrap_or(a);
            normalize(&prefix.replace("{user}", "u"))
                .map_err(|v| format!("policy: mounts.allow {a:?}: {}", v.message))?;
        }
        Ok(())
    }

    /// Checks `spec` for a job owned by `owner` with `role`. `protected`:
    /// this process's own data directories, denied like the built-ins.
    pub fn check(
        &self,
        spec: &JobSpec,
        owner: &str,
        role: &str,
        protected: &[String],
    ) -> Result<(), Violation> {
        let admin = role == "admin";
        for m in &spec.mounts {
            let source = normalize(&m.source)?;
            check_denied(&source, protected)?;
            if !admin && !self.mount_allowed(&source, m.read_only, owner) {
                return Err(violation(
                    "mounts.allow",
                    format!(
                        "-v {}: {role}s may mount only {} (read-only where marked :ro)",
                        m.source,
                        self.allowed_text(owner)
                    ),
                ));
            }
        }
        if !admin {
            for p in spec.ports.iter().filter(|p| p.host_port != 0) {
                if p.host_port < self.ports.min || p.host_port > self.ports.max {
                    return Err(violation(
                        "ports",
                        format!(
                            "-p {}: host ports {}..{} only",
                            p.host_port, self.ports.min, self.ports.max
                        ),
                    ));
                }
            }
        }
        let privs = &self.privileges;
        let may = |roles: &[String]| roles.iter().any(|r| r == role);
        let asks = [
            (
                "privileges.privileged",
                "--privileged",
                spec.privileged,
                &privs.privileged,
            ),
            (
                "privileges.cap_add",
                "--cap-add",
                !spec.cap_add.is_empty(),
                &privs.cap_add,
            ),
            (
                "privileges.device",
                "--device",
                !spec.devices.is_empty(),
                &privs.device,
            ),
            (
                "privileges.network_host",
                "--network host",
                spec.network == "host" && spec.nodes <= 1,
                &privs.network_host,
            ),
            (
                "privileges.gang_network_host",
                "the host network for a gang (--nodes; --network bridge opts out)",
                spec.network == "host" && spec.nodes > 1,
                &privs.gang_network_host,
            ),
            (
                "privileges.ipc_host",
                "--ipc host",
                spec.ipc == "host",
                &privs.ipc_host,
            ),
            (
                "privileges.root",
                "running as root",
                runs_as_root(&spec.run_as),
                &privs.root,
            ),
        ];
        for (rule, flag, asked, roles) in asks {
            if asked && !may(roles) {
                let hint = if rule == "privileges.root" {
                    " (set -u UID[:GID])"
                } else {
                    ""
                };
                return Err(violation(
                    rule,
                    format!(
                        "{flag} is not allowed for role {role}{hint}; allowed for: {}",
                        roles.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    fn mount_allowed(&self, source: &str, read_only: bool, owner: &str) -> bool {
        self.mounts.allow.iter().any(|a| {
            let (prefix, ro_only) = match a.strip_suffix(":ro") {
                Some(p) => (p, true),
                None => (a.as_str(), false),
            };
            if prefix.contains("{user}") && !safe_component(owner) {
                return false;
            }
            let Ok(prefix) = normalize(&prefix.replace("{user}", owner)) else {
                return false;
            };
            is_within(source, &prefix) && (read_only || !ro_only)
        })
    }

    fn allowed_text(&self, owner: &str) -> String {
        if self.mounts.allow.is_empty() {
            return "nothing (the policy allows no host paths)".into();
        }
        self.mounts
            .allow
            .iter()
            .map(|a| a.replace("{user}", owner))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Refuses `source` (normalised) when it is, is under, or is above a
/// built-in or `protected` path.
pub fn check_denied(source: &str, protected: &[String]) -> Result<(), Violation> {
    let denied = BUILT_IN_DENY
        .iter()
        .map(|s| s.to_string())
        .chain(protected.iter().filter_map(|p| normalize(p).ok()));
    for d in denied {
        let hit = if d == "/" {
            source == "/"
        } else {
            is_within(source, &d) || is_within(&d, source)
        };
        if hit {
            return Err(violation(
                "mounts.deny",
                format!(
                    "host path {source} reaches {d}, which no policy allows (the built-in deny list: the root, system and Docker paths, Berth's own data)"
                ),
            ));
        }
    }
    Ok(())
}

/// A user name can stand for a path component.
fn safe_component(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// docker's `-u` names root: uid 0, `root`, or nothing (the image's default
/// user, root in most images).
pub fn runs_as_root(run_as: &str) -> bool {
    let user = run_as.split(':').next().unwrap_or("").trim();
    user.is_empty() || user == "root" || user.parse::<u32>() == Ok(0)
}

#[cfg(test)]
mod tests;
