//! What `berth` does before (or without) reaching a controller.

use std::process::Command;

/// An address where nothing listens.
fn dead_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn berth(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
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
