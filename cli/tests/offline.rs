//! What `berth` does before (or without) reaching a controller.

use std::process::Command;

/// An address where nothing listens.
fn dead_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// A cluster CA of nobody's (nothing answers anyway), and no config file.
fn ca() -> std::path::PathBuf {
    let dir = tempfile::tempdir().unwrap().keep();
    let ca = berth_proto::tls::Ca::generate("offline").unwrap();
    ca.save(&dir).unwrap();
    dir.join("ca.pem")
}

fn berth(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .env("BERTH_CONFIG", "/nonexistent/berth.toml")
        .env("BERTH_CA", ca())
        .env_remove("BERTH_TOKEN")
        .arg("--addr")
        .arg(dead_addr())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn malformed_flags_are_refused_before_connecting() {
    for (args, needle) in [
        (
            vec!["run", "-v", "data:/data", "img", "true"],
            "must be absolute",
        ),
        (vec!["run", "-p", "abc:80", "img", "true"], "not a number"),
        (
            vec!["run", "--shm-size", "12zz", "img", "true"],
            "unknown unit",
        ),
        (vec!["run", "-e", "=x", "img", "true"], "name is empty"),
    ] {
        let out = berth(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{args:?}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(
            !err.contains("cannot reach"),
            "refused before any connection: {err}"
        );
    }
}

#[test]
fn no_controller_says_how_to_start_one() {
    let out = berth(&["ps"]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach a Berth controller") && err.contains("berth dev"),
        "{err}"
    );
}

#[test]
fn no_ca_says_where_to_get_one() {
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .env("BERTH_CONFIG", "/nonexistent/berth.toml")
        .env_remove("BERTH_CA")
        .args(["--addr", &dead_addr(), "ps"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no cluster CA") && err.contains("berth dev") && err.contains("BERTH_CA"),
        "{err}"
    );
}
