use super::*;
use crate::v1::{Mount, PortMapping};
use proptest::prelude::*;

fn mount(src: &str, ro: bool) -> JobSpec {
    JobSpec {
        mounts: vec![Mount {
            source: src.into(),
            target: "/x".into(),
            read_only: ro,
        }],
        ..Default::default()
    }
}

fn lab() -> Policy {
    Policy {
        mounts: Mounts {
            allow: vec!["/home/{user}".into(), "/data:ro".into()],
        },
        ..Policy::default()
    }
}

fn rule(r: Result<(), Violation>) -> &'static str {
    r.err().map_or("ok", |v| v.rule)
}

#[test]
fn the_built_in_deny_list_binds_every_role() {
    let p = lab();
    for (src, want) in [
        ("/", "mounts.deny"),
        ("/etc", "mounts.deny"),
        ("/etc/", "mounts.deny"),
        ("//etc//ssl", "mounts.deny"),
        ("/var/run/docker.sock", "mounts.deny"),
        ("/run/docker.sock", "mounts.deny"),
        // Above a denied path: it would expose the socket.
        ("/var/run", "mounts.deny"),
        ("/var", "mounts.deny"),
        ("/proc/1/root", "mounts.deny"),
        ("/etc/../home/alice", "mounts.no-dotdot"),
        ("relative/path", "mounts.absolute"),
    ] {
        for role in ["admin", "user"] {
            assert_eq!(
                rule(p.check(&mount(src, false), "alice", role, &[])),
                want,
                "{src} as {role}"
            );
        }
    }
}

#[test]
fn users_mount_only_what_the_policy_allows_with_their_own_name() {
    let p = lab();
    assert_eq!(
        rule(p.check(&mount("/home/alice", false), "alice", "user", &[])),
        "ok"
    );
    assert_eq!(
        rule(p.check(&mount("/home/alice/data/", false), "alice", "user", &[])),
        "ok"
    );
    assert_eq!(
        rule(p.check(&mount("/home/alice", false), "bob", "user", &[])),
        "mounts.allow"
    );
    // A sibling that merely starts with the same letters is not under it.
    assert_eq!(
        rule(p.check(&mount("/home/alice2", false), "alice", "user", &[])),
        "mounts.allow"
    );
    assert_eq!(
        rule(p.check(&mount("/data/set", true), "bob", "user", &[])),
        "ok"
    );
    assert_eq!(
        rule(p.check(&mount("/data/set", false), "bob", "user", &[])),
        "mounts.allow"
    );
    // Admins mount anything outside the deny list.
    assert_eq!(
        rule(p.check(&mount("/srv/x", false), "root", "admin", &[])),
        "ok"
    );
    // A user name that is not a path component expands to nothing.
    assert_eq!(
        rule(p.check(&mount("/home", false), "..", "user", &[])),
        "mounts.allow"
    );
}

#[test]
fn data_dirs_are_protected_like_the_built_ins() {
    let p = Policy::default();
    let protected = vec!["/var/lib/berth".to_string()];
    for src in ["/var/lib/berth/agent", "/var/lib", "/var/lib/berth"] {
        assert_eq!(
            rule(p.check(&mount(src, true), "a", "admin", &protected)),
            "mounts.deny",
            "{src}"
        );
    }
    assert_eq!(
        rule(p.check(&mount("/var/lib/other", true), "a", "admin", &protected)),
        "ok"
    );
}

#[test]
fn privileges_follow_the_roles_listed() {
    let p = Policy::default();
    let privileged = JobSpec {
        privileged: true,
        ..Default::default()
    };
    assert_eq!(
        rule(p.check(&privileged, "alice", "user", &[])),
        "privileges.privileged"
    );
    assert_eq!(rule(p.check(&privileged, "root", "admin", &[])), "ok");
    let host_net = JobSpec {
        network: "host".into(),
        ..Default::default()
    };
    assert_eq!(
        rule(p.check(&host_net, "alice", "user", &[])),
        "privileges.network_host"
    );
    let strict = Policy::from_toml("[privileges]\nroot = [\"admin\"]\n").unwrap();
    assert_eq!(
        rule(strict.check(&JobSpec::default(), "alice", "user", &[])),
        "privileges.root"
    );
    let as_uid = JobSpec {
        run_as: "1000:1000".into(),
        ..Default::default()
    };
    assert_eq!(rule(strict.check(&as_uid, "alice", "user", &[])), "ok");
    let low_port = JobSpec {
        ports: vec![PortMapping {
            host_port: 80,
            container_port: 80,
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_eq!(rule(p.check(&low_port, "alice", "user", &[])), "ports");
}

#[test]
fn a_policy_with_typos_is_refused() {
    assert!(Policy::from_toml("[privileges]\nprivileged = [\"admn\"]").is_err());
    assert!(Policy::from_toml("[mount]\nallow = []").is_err());
    assert!(Policy::from_toml("[ports]\nmin = 9000\nmax = 80").is_err());
    assert!(Policy::from_toml("[mounts]\nallow = [\"../x\"]").is_err());
    let p = Policy::from_toml("[mounts]\nallow = [\"/scratch\"]").unwrap();
    assert_eq!(Policy::from_toml(&p.to_toml()).unwrap(), p);
}

proptest! {
    /// Normalising never lets a path escape: whatever a path spells, once
    /// accepted it has no `.`/`..`/empty component, and it is within a
    /// prefix exactly when its components start with the prefix's.
    #[test]
    fn normalized_paths_are_canonical(parts in proptest::collection::vec("(\\.|\\.\\.|[a-z]{1,3}|)", 0..8), trailing in any::<bool>()) {
        let mut path = format!("/{}", parts.join("/"));
        if trailing { path.push('/'); }
        match normalize(&path) {
            Ok(n) => {
                prop_assert!(!parts.iter().any(|p| p == ".."));
                prop_assert!(n.starts_with('/'));
                prop_assert!(n == "/" || !n.ends_with('/'));
                prop_assert!(n == "/" || !n.split('/').skip(1).any(|c| c.is_empty() || c == "." || c == ".."));
                prop_assert_eq!(normalize(&n).unwrap(), n.clone());
            }
            Err(v) => prop_assert_eq!(v.rule, "mounts.no-dotdot"),
        }
    }

    /// Nothing under /home/alice is allowed to bob, and everything
    /// normalised under it is allowed to alice, however it is spelled.
    #[test]
    fn home_rule_holds_for_any_spelling(sub in proptest::collection::vec("[a-z.]{1,4}", 0..4), slashes in 1usize..3) {
        let sep = "/".repeat(slashes);
        let path = format!("{sep}home{sep}alice{sep}{}", sub.join(&sep));
        let p = lab();
        let alice = p.check(&mount(&path, false), "alice", "user", &[]);
        let bob = p.check(&mount(&path, false), "bob", "user", &[]);
        prop_assert!(bob.is_err());
        if sub.iter().any(|s| s == "..") {
            prop_assert_eq!(alice.unwrap_err().rule, "mounts.no-dotdot");
        } else {
            prop_assert!(alice.is_ok());
        }
    }
}
