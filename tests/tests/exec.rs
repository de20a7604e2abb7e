//! `berth exec` into a running job's container, through the controller and
//! the agent of its host, on the real Docker daemon.

use std::io::Write;
use std::process::{Command, Stdio};

use berth_tests::*;

/// Drives `berth exec -it JOB sh` (or, with `--run IMAGE`, `berth run -it
/// IMAGE sh`) through a real pseudo-terminal, and checks what a person at
/// it would see: the terminal size at start and after a resize, Ctrl-C
/// cutting a `sleep 30` short, and `exit 7` becoming the exit code.
fn tty_session(c: &Cluster, target: &[&str]) {
    let out = Command::new("python3")
        .env("BERTH_CONFIG", c.config_path())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/tty_session.py"
        ))
        .arg(bin("berth"))
        .arg(&c.addr)
        .args(target)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["before"].as_str().unwrap().contains("40 100"), "{v}");
    assert!(v["after"].as_str().unwrap().contains("50 120"), "{v}");
    assert_eq!(v["interrupted"], true, "Ctrl-C cut the sleep short: {v}");
    assert_eq!(v["exit_code"], 7, "{v}");
}

fn running_job(c: &mut Cluster) -> String {
    c.add_agent(1);
    let job = c.run_detached(&["--name", &unique("sh"), IMAGE, "sleep", "300"]);
    c.wait_state(&job, "running");
    job
}

#[test]
fn exec_streams_stdout_and_stderr_apart_and_returns_the_exit_code() {
    let mut c = Cluster::start();
    let job = running_job(&mut c);
    let out = c.berth(&["exec", &job, "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");

    // -i: stdin reaches the command, and its end is the command's end-of-file.
    let mut child = c
        .cli()
        .args([
            "--addr",
            &c.addr,
            "exec",
            "-i",
            &job,
            "sh",
            "-c",
            "tr a-z A-Z; echo eof",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "HELLO\neof\n");
    assert_eq!(out.status.code(), Some(0));

    // Options reach docker exec.
    let out = c.berth(&[
        "exec",
        "-e",
        "X=42",
        "-w",
        "/tmp",
        &job,
        "sh",
        "-c",
        "echo $X $(pwd)",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "42 /tmp\n");
}

#[test]
fn exec_it_is_a_real_terminal_with_resize_and_ctrl_c() {
    let mut c = Cluster::start();
    let job = running_job(&mut c);
    tty_session(&c, &[&job]);
}

#[test]
fn exec_refuses_what_it_cannot_do() {
    let mut c = Cluster::start();
    c.add_agent(1);
    let done = c.run_detached(&[IMAGE, "true"]);
    c.wait_state(&done, "exited");
    let out = c.berth(&["exec", &done, "ls"]);
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exec needs a running container"), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    let out = c.berth(&["exec", "no-such-job", "ls"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-job"));
    // -t without a terminal here, as docker says.
    let out = c.berth(&["exec", "-t", &done, "sh"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a terminal"));
}

#[test]
fn run_it_gives_an_interactive_job_on_whichever_host_it_lands() {
    let mut c = Cluster::start();
    c.add_agent(1);
    tty_session(&c, &["--run", IMAGE]);
    // The job itself ran and exited with that code.
    let jobs = c.json(&["ps", "-a"]);
    let id = jobs[0]["id"].as_str().unwrap().to_string();
    let job = c.wait_state(&id, "exited");
    assert_eq!(job["exit_code"], 7, "{job}");
}
