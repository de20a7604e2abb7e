//! `berth build` on the real daemon: a context sent to a host (less what
//! .dockerignore says), built there, the image known to the cluster at
//! once (a job runs it with no sleep between), a FROM no host has refused
//! before anything is sent, a failing RUN's output and exit code returned,
//! and a FROM on another host moved to the builder first.

use berth_tests::*;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn context(dockerfile: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    dir
}

#[test]
fn a_build_runs_on_a_host_and_its_image_runs_at_once() {
    let mut c = Cluster::start();
    let node = c.add_agent(1);
    let tag = format!("{}:1", unique("built"));
    let dir = context(&format!(
        "FROM {IMAGE}\nARG WORD=built\nCOPY keep.txt /keep.txt\nRUN echo $WORD > /b\n"
    ));
    // A whole line: once in CI, an attached run's output lacked a last
    // line that had no newline (not this test's subject; noted apart).
    std::fs::write(dir.path().join("keep.txt"), "kept\n").unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("secrets/key"), "never sent").unwrap();
    std::fs::write(dir.path().join(".dockerignore"), "secrets\n").unwrap();
    let out = c.berth(&["build", "-t", &tag, dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains(&format!("building on {node}")),
        "{}",
        stderr(&out)
    );
    // No sleep: the image table already lists it.
    let run = c.berth(&["run", &tag, "cat", "/b", "/keep.txt"]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(stdout(&run), "built\nkept\n");
    // .dockerignore kept the secret out of the context (and the image).
    let run = c.berth(&["run", &tag, "ls", "/"]);
    assert!(!stdout(&run).contains("secrets"), "{}", stdout(&run));
    let _ = std::process::Command::new("docker")
        .args(["rmi", "-f", &tag])
        .output();

    // --build-arg reaches ARG; --target stops at a stage.
    let tag2 = format!("{}:1", unique("built"));
    let dir = context(&format!(
        "FROM {IMAGE} AS first\nARG WORD=default\nRUN echo $WORD > /b\nFROM first\nRUN false\n"
    ));
    let out = c.berth(&[
        "build",
        "-t",
        &tag2,
        "--build-arg",
        "WORD=given",
        "--target",
        "first",
        dir.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run = c.berth(&["run", &tag2, "cat", "/b"]);
    assert_eq!(stdout(&run).trim(), "given");
    let _ = std::process::Command::new("docker")
        .args(["rmi", "-f", &tag2])
        .output();
}

#[test]
fn a_missing_from_is_refused_and_a_failing_run_returns_its_output() {
    let mut c = Cluster::start();
    c.add_agent(1);
    let dir = context("FROM nowhere/at-all:1\nRUN true\n");
    let out = c.berth(&["build", "-t", "x:1", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("FROM nowhere/at-all:1: no ready host has it"),
        "{}",
        stderr(&out)
    );
    let dir = context(&format!("FROM {IMAGE}\nRUN echo about to fail && exit 7\n"));
    let tag = format!("{}:1", unique("broken"));
    let out = c.berth(&["build", "-t", &tag, dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stdout(&out).contains("about to fail"), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("the build failed"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains('7'),
        "the exit code: {}",
        stderr(&out)
    );
    assert!(
        main_image_id(&tag).is_none(),
        "a failed build tagged nothing"
    );
    // Bad input: nothing sent.
    let out = c.berth(&["build", "-t", "Bad Tag", dir.path().to_str().unwrap()]);
    assert!(stderr(&out).contains("NAME[:TAG]"), "{}", stderr(&out));
    let out = c.berth(&["build", "-t", "x:1", "/no/such/dir"]);
    assert!(stderr(&out).contains("not a directory"), "{}", stderr(&out));
}

#[test]
fn a_from_image_on_another_host_is_moved_to_the_builder_first() {
    let mut c = Cluster::start();
    let d2 = Dockerd::start();
    c.add_agent(1);
    let sock = d2.socket().display().to_string();
    let second = c.add_agent_with("1", &["--docker", &sock]);
    let tag = format!("{}:1", unique("moved"));
    let dir = context(&format!("FROM {IMAGE}\nRUN echo on-second > /where\n"));
    let out = c.berth(&[
        "build",
        "-t",
        &tag,
        "--on",
        &second,
        dir.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains(&format!("moving {IMAGE} to {second}")),
        "{}",
        stderr(&out)
    );
    assert!(d2.image_id(&tag).is_some(), "built in the second store");
    assert!(main_image_id(&tag).is_none(), "not on the first host");
}
