//! Moving images between separate image stores: the machine's Docker daemon
//! and a second `dockerd` started by the test, each with its own agent.

use berth_tests::*;

fn push(c: &Cluster, image: &str, to: &str) -> std::process::Output {
    c.berth(&["image", "push", image, "--to", to])
}

#[test]
fn an_image_moves_between_daemons_and_keeps_its_id() {
    let mut c = Cluster::start();
    let d2 = Dockerd::start();
    let _src = c.add_agent(1);
    let sock = d2.socket().display().to_string();
    // Reports every 5 s: only a push that waits for the target's report
    // makes the image visible at once (read your writes).
    let dst = c.add_agent_with(
        "1",
        &[
            "--docker",
            &sock,
            "--label",
            "store=second",
            "--report-every",
            "5",
        ],
    );
    assert_eq!(d2.image_id(IMAGE), None, "the second store starts empty");
    let out = push(&c, IMAGE, &dst);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains(&format!("{dst}: loaded")), "{err}");
    assert_eq!(d2.image_id(IMAGE), main_image_id(IMAGE), "same image id");
    // The image table has it as soon as the push returned (one row per
    // node and image); a second push has nothing to do.
    let images = c.json(&["images"]);
    let listed = images.as_array().unwrap().iter().any(|i| {
        i["node"] == dst.as_str()
            && i["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == IMAGE))
    });
    assert!(listed, "not in berth images right after the push: {images}");
    let again = push(&c, IMAGE, &dst);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already has"));
    // And a job placed there runs on the loaded image.
    let id = c.run_detached(&["--constraint", "store=second", IMAGE, "true"]);
    let job = c.wait_state(&id, "exited");
    assert_eq!(
        (job["node"].as_str(), job["exit_code"].as_i64()),
        (Some(dst.as_str()), Some(0))
    );
}

#[test]
fn a_corrupted_transfer_is_refused_and_loads_nothing() {
    let mut c = Cluster::start();
    let d2 = Dockerd::start();
    c.add_agent_env("1", &[], &[("BERTH_FAULT_CORRUPT_EXPORT", "*")]);
    let sock = d2.socket().display().to_string();
    let dst = c.add_agent_with("1", &["--docker", &sock]);
    let out = push(&c, IMAGE, &dst);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a corrupt transfer must fail");
    assert!(
        err.contains("does not match its checksum") && err.contains("nothing was loaded"),
        "{err}"
    );
    assert_eq!(d2.image_id(IMAGE), None, "no image, not even a partial one");
    let listed = d2.docker(&["images", "-aq"]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).trim().is_empty(),
        "no dangling image either"
    );
}

#[test]
fn a_push_that_cannot_fit_is_refused_before_anything_is_sent() {
    let mut c = Cluster::start();
    let d2 = Dockerd::start();
    c.add_agent(1);
    let sock = d2.socket().display().to_string();
    let dst = c.add_agent_env(
        "1",
        &["--docker", &sock],
        &[("BERTH_FAULT_DISK_FREE", "1048576")],
    );
    let out = push(&c, IMAGE, &dst);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("not enough disk") && err.contains(&format!("{dst} has 1 MiB free")),
        "{err}"
    );
    assert!(err.contains("nothing was sent"), "{err}");
    assert_eq!(d2.image_id(IMAGE), None);
    // Bad input: an image no host has, a host that does not exist.
    let out = push(&c, "nope:1", &dst);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no ready host has nope:1"));
    let out = push(&c, IMAGE, "no-such-host");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no node named no-such-host"));
}

/// Jobs that may only run on the second store: the scheduler places them
/// there although it lacks the image, and the agent receives it first.
fn second_store_cluster(source_env: &[(&str, &str)]) -> (Cluster, Dockerd, String, String) {
    let mut c = Cluster::start();
    let d2 = Dockerd::start();
    let src = c.add_agent_env("1", &[], source_env);
    let sock = d2.socket().display().to_string();
    let dst = c.add_agent_with("2", &["--docker", &sock, "--label", "store=second"]);
    (c, d2, src, dst)
}

#[test]
fn jobs_on_a_host_without_their_image_share_one_pull_and_run() {
    // Paced so that both jobs are seen pulling before the image is in.
    let (c, d2, src, dst) = second_store_cluster(&[("BERTH_FAULT_EXPORT_BPS", "1000000")]);
    let run = |name: &str| {
        c.run_detached(&[
            "--gpus",
            "1",
            "--name",
            name,
            "--constraint",
            "store=second",
            IMAGE,
            "true",
        ])
    };
    let (a, b) = (run(&unique("pa")), run(&unique("pb")));
    let pulling = wait_for("both jobs pulling", DEADLINE, || {
        let (ja, jb) = (c.job(&a), c.job(&b));
        (ja["state"] == "pulling" && jb["state"] == "pulling").then_some(ja)
    });
    assert_eq!(pulling["node"], dst.as_str());
    assert_eq!(pulling["pull"]["image"], IMAGE);
    let ps = c.berth(&["ps"]);
    assert!(
        String::from_utf8_lossy(&ps.stdout).contains("Pulling image"),
        "{}",
        String::from_utf8_lossy(&ps.stdout)
    );
    for job in [&a, &b] {
        let j = c.wait_state(job, "exited");
        assert_eq!(
            (j["node"].as_str(), j["exit_code"].as_i64()),
            (Some(dst.as_str()), Some(0))
        );
    }
    assert_eq!(
        d2.image_id(IMAGE),
        main_image_id(IMAGE),
        "verified, same id"
    );
    let exports = std::fs::read_to_string(c.log_of(&src)).unwrap();
    assert_eq!(
        exports.matches("exporting image").count(),
        1,
        "one transfer for both jobs:\n{exports}"
    );
}

#[test]
fn killing_the_source_mid_transfer_leaves_no_partial_image_and_the_pull_retries() {
    // 2 MiB arrive at once, then a 4 s pause before the rest: the kill
    // lands in the middle of the archive.
    let (mut c, d2, src, dst) = second_store_cluster(&[("BERTH_FAULT_EXPORT_BPS", "500000")]);
    let job = c.run_detached(&["--constraint", "store=second", IMAGE, "true"]);
    wait_for("part of the image received", DEADLINE, || {
        let j = c.job(&job);
        (j["state"] == "pulling" && j["pull"]["done_bytes"].as_u64()? > 0).then_some(())
    });
    c.kill_agent(&src);
    wait_for("the cut transfer noticed", DEADLINE, || {
        let j = c.job(&job);
        j["pull"]["message"]
            .as_str()?
            .contains("retrying")
            .then_some(())
    });
    assert_eq!(d2.image_id(IMAGE), None, "no partial image");
    let listed = d2.docker(&["images", "-aq"]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).trim().is_empty(),
        "no dangling layers either"
    );
    assert_eq!(
        c.job(&job)["state"],
        "pulling",
        "the job waits, it is not lost"
    );
    // The holder comes back (unpaced): the next round succeeds.
    c.start_agent(&src, 1);
    let j = c.wait_state(&job, "exited");
    assert_eq!(
        (j["node"].as_str(), j["exit_code"].as_i64()),
        (Some(dst.as_str()), Some(0))
    );
    assert_eq!(d2.image_id(IMAGE), main_image_id(IMAGE));
}

#[test]
fn layers_the_target_has_are_not_sent_again() {
    let mut c = Cluster::start();
    let d2 = Dockerd::start();
    c.add_agent(1);
    let sock = d2.socket().display().to_string();
    let dst = c.add_agent_with("1", &["--docker", &sock]);
    assert!(push(&c, IMAGE, &dst).status.success());
    // A new image on top of the workload image, on the machine's daemon.
    let derived = format!("berth/derived:{}", unique("t"));
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("new.bin"), vec![5u8; 256 << 10]).unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {IMAGE}\nCOPY new.bin /\n"),
    )
    .unwrap();
    let built = std::process::Command::new("docker")
        .args(["build", "-q", "-t", &derived])
        .arg(ctx.path())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let want = main_image_id(&derived);
    wait_for("the new image in the source's report", DEADLINE, || {
        let images = c.json(&["images"]);
        images
            .as_array()?
            .iter()
            .any(|i| {
                i["tags"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t == derived.as_str()))
            })
            .then_some(())
    });
    let out = c.berth(&["image", "push", &derived, "--to", &dst, "-o", "json"]);
    let _ = std::process::Command::new("docker")
        .args(["rmi", &derived])
        .output();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let skipped = v[0]["skipped_bytes"].as_u64().unwrap();
    let sent = v[0]["bytes"].as_u64().unwrap();
    assert!(skipped > 1 << 20, "the workload layer stays home: {v}");
    assert!(
        sent < skipped,
        "only the new layer and metadata travel: {v}"
    );
    assert_eq!(d2.image_id(&derived), want, "same image id");
}
