//! `berth image save|load|rm|gc` across separate image stores: the
//! machine's Docker daemon (the source) and a second `dockerd` started by
//! the test. Removals and GC only ever touch the second store.

use std::process::Command;

use berth_tests::*;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// A small image of its own in the second store (one file, no layers
/// shared with the workload image).
fn import_extra(d2: &Dockerd, dir: &std::path::Path, tag: &str) {
    let root = dir.join("extra-root");
    std::fs::create_dir_all(&root).unwrap();
    // Content of its own: the same bytes would make the same image.
    std::fs::write(root.join("data"), tag.repeat(8 << 10)).unwrap();
    let tar = dir.join("extra.tar");
    let ok = Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&root)
        .arg(".")
        .status()
        .unwrap();
    assert!(ok.success());
    let out = d2.docker(&["import", tar.to_str().unwrap(), tag]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn save_then_load_moves_an_image_through_this_machine_and_refuses_a_truncated_archive() {
    let mut c = Cluster::start();
    let d2 = Dockerd::start();
    c.add_agent(1);
    let sock = d2.socket().display().to_string();
    let dst = c.add_agent_with("1", &["--docker", &sock]);
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("workload.tar");

    let out = c.berth(&["image", "save", IMAGE, "-o", tar.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let size = std::fs::metadata(&tar).unwrap().len();
    assert!(size > 1 << 20, "a whole archive: {size} bytes");
    assert!(!dir.path().join("workload.tar.part").exists());

    // A cut-short archive loads nothing.
    let bad = dir.path().join("truncated.tar");
    std::fs::write(&bad, &std::fs::read(&tar).unwrap()[..(size / 2) as usize]).unwrap();
    let out = c.berth(&["image", "load", "-i", bad.to_str().unwrap(), "--to", &dst]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("nothing was loaded") || stderr(&out).contains("docker load"),
        "{}",
        stderr(&out)
    );
    let listed = d2.docker(&["images", "-aq"]);
    assert!(
        String::from_utf8_lossy(&listed.stdout).trim().is_empty(),
        "no partial image"
    );

    let out = c.berth(&["image", "load", "-i", tar.to_str().unwrap(), "--to", &dst]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("loaded {IMAGE} on {dst}")),
        "{}",
        stderr(&out)
    );
    assert_eq!(d2.image_id(IMAGE), main_image_id(IMAGE), "same image id");

    // Without --to, as `docker load`: one ready host, named in the answer.
    let out = c.berth(&["image", "load", "-i", tar.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stderr(&out);
    let host = said
        .split(&format!("loaded {IMAGE} on "))
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("which host? {said}"))
        .to_string();
    assert!(c.agents.iter().any(|(n, _)| *n == host), "{said}");

    // Bad input: an image no host has, a file that is not there, a down host.
    let out = c.berth(&[
        "image",
        "save",
        "nope:1",
        "-o",
        dir.path().join("n.tar").to_str().unwrap(),
    ]);
    assert!(
        stderr(&out).contains("no ready host has nope:1"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("n.tar").exists() && !dir.path().join("n.tar.part").exists());
    let out = c.berth(&["image", "load", "-i", "/no/such.tar", "--to", &dst]);
    assert!(
        stderr(&out).contains("opening /no/such.tar"),
        "{}",
        stderr(&out)
    );
    let out = c.berth(&[
        "image",
        "load",
        "-i",
        tar.to_str().unwrap(),
        "--to",
        "no-such-host",
    ]);
    assert!(
        stderr(&out).contains("no node named no-such-host"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn rm_and_gc_spare_what_jobs_need_and_gc_runs_by_itself_on_a_full_disk() {
    // Automatic GC every second past 50% used. Both disks read empty at
    // first (nothing is evicted from the machine's daemon, ever); later the
    // second store's reads full.
    let mut c = Cluster::start_with(
        1,
        &[
            "--image-gc-high",
            "50",
            "--image-gc-low",
            "40",
            "--image-gc-interval",
            "1",
        ],
    );
    let d2 = Dockerd::start();
    c.add_agent_env(
        "1",
        &["--label", "store=main"],
        &[("BERTH_FAULT_DISK_FREE", "1000000000000000")],
    );
    let sock = d2.socket().display().to_string();
    let dst = c.add_agent_env(
        "1",
        &["--docker", &sock],
        &[("BERTH_FAULT_DISK_FREE", "1000000000000000")],
    );
    let out = c.berth(&["image", "push", IMAGE, "--to", &dst]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = tempfile::tempdir().unwrap();
    import_extra(&d2, dir.path(), "berth/extra:1");
    import_extra(&d2, dir.path(), "berth/extra:2");

    // A live job (on the machine's daemon) needs the workload image: rm
    // refuses, gc keeps it, on every host.
    let job = c.run_detached(&["--constraint", "store=main", IMAGE, "sleep", "120"]);
    c.wait_state(&job, "running");
    let out = c.berth(&["image", "rm", IMAGE, "--on", &dst]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("needed by live or queued jobs") && stderr(&out).contains(&job),
        "{}",
        stderr(&out)
    );
    let dry = c.json(&["image", "gc", "--on", &dst, "--dry-run"]);
    let would: Vec<&str> = dry[0]["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["tags"][0].as_str().unwrap())
        .collect();
    let listed = d2.docker(&["images"]);
    assert_eq!(
        would.len(),
        2,
        "{dry}\n{}",
        String::from_utf8_lossy(&listed.stdout)
    );
    assert!(would.contains(&"berth/extra:1") && would.contains(&"berth/extra:2"));
    assert!(
        d2.image_id("berth/extra:1").is_some(),
        "a dry run removes nothing"
    );
    let out = c.berth(&["image", "rm", "berth/extra:2", "--on", &dst]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(d2.image_id("berth/extra:2"), None);

    // The second store's disk now reads full: GC runs by itself, evicts the
    // unneeded image and keeps the one the queued job needs.
    c.kill_agent(&dst);
    let dst2 = c.add_agent_env(
        "1",
        &["--docker", &sock],
        &[("BERTH_FAULT_DISK_FREE", "1048576")],
    );
    wait_for("automatic gc on the full host", DEADLINE, || {
        d2.image_id("berth/extra:1").is_none().then_some(())
    });
    assert!(d2.image_id(IMAGE).is_some(), "needed by a live job: kept");
    assert!(
        main_image_id(IMAGE).is_some(),
        "the machine's daemon untouched"
    );

    // Once no job needs it, it can go.
    let out = c.berth(&["stop", &job]);
    assert!(out.status.success(), "{}", stderr(&out));
    c.wait_state(&job, "cancelled");
    let out = c.berth(&["image", "rm", IMAGE, "--on", &dst2]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(d2.image_id(IMAGE), None);
}
