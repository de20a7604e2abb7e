//! `berth cp` both ways and `berth commit`, on the real Docker daemon,
//! through the controller and the agent of the job's host.

use std::process::Command;

use berth_tests::*;

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn cp_copies_files_and_directories_both_ways_like_docker_cp() {
    let mut c = Cluster::start();
    c.add_agent(1);
    let job = c.run_detached(&["--name", &unique("cp"), IMAGE, "sleep", "300"]);
    c.wait_state(&job, "running");
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("data");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(src.join("sub/b.txt"), "beta\n").unwrap();
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
    let at = |p: &str| format!("{job}:{p}");
    let cat = |p: &str| ok(&c.berth(&["exec", &job, "cat", p]));

    // Into an existing directory: it lands inside, under its own name.
    ok(&c.berth(&["cp", src.to_str().unwrap(), &at("/tmp")]));
    assert_eq!(cat("/tmp/data/sub/b.txt"), "beta\n");
    assert_eq!(
        cat("/tmp/data/link"),
        "alpha\n",
        "a symlink stays a symlink"
    );
    // Onto a new name: it becomes that name. A single file too.
    ok(&c.berth(&["cp", src.to_str().unwrap(), &at("/tmp/renamed")]));
    assert_eq!(cat("/tmp/renamed/a.txt"), "alpha\n");
    ok(&c.berth(&[
        "cp",
        src.join("a.txt").to_str().unwrap(),
        &at("/tmp/one.txt"),
    ]));
    assert_eq!(cat("/tmp/one.txt"), "alpha\n");

    // Back out: onto a new local name, and into an existing directory.
    let out = local.path().join("out");
    ok(&c.berth(&["cp", &at("/tmp/renamed"), out.to_str().unwrap()]));
    assert_eq!(
        std::fs::read_to_string(out.join("sub/b.txt")).unwrap(),
        "beta\n"
    );
    ok(&c.berth(&["cp", &at("/tmp/one.txt"), out.to_str().unwrap()]));
    assert_eq!(
        std::fs::read_to_string(out.join("one.txt")).unwrap(),
        "alpha\n"
    );
    // `-`: a tar on stdout.
    let tar = c.berth(&["cp", &at("/tmp/one.txt"), "-"]);
    let mut names = Vec::new();
    for e in tar::Archive::new(&tar.stdout[..]).entries().unwrap() {
        names.push(e.unwrap().path().unwrap().display().to_string());
    }
    assert_eq!(names, vec!["one.txt"]);

    // Bad input: a path that is not there, no job side, a directory onto a file.
    let out = c.berth(&["cp", &at("/no/such"), local.path().to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no such file"),
        "{out:?}"
    );
    let out = c.berth(&["cp", "./a", "./b"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("JOB:PATH"));
    let out = c.berth(&["cp", src.to_str().unwrap(), &at("/tmp/one.txt")]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("onto the file"),
        "{out:?}"
    );

    // A finished job's container still gives its files (results!).
    ok(&c.berth(&["stop", &job]));
    c.wait_state(&job, "cancelled");
    let done = local.path().join("after");
    ok(&c.berth(&["cp", &at("/tmp/one.txt"), done.to_str().unwrap()]));
    assert_eq!(std::fs::read_to_string(done).unwrap(), "alpha\n");
}

#[test]
fn commit_makes_an_image_that_jobs_can_run() {
    let mut c = Cluster::start();
    // Reports every 5 s: the image table could only have the commit at
    // once if the commit waits for it (read your writes).
    let node = c.add_agent_with("1", &["--report-every", "5"]);
    let job = c.run_detached(&[IMAGE, "sleep", "300"]);
    c.wait_state(&job, "running");
    ok(&c.berth(&["exec", &job, "sh", "-c", "echo v1 > /model.txt"]));
    let image = format!("berth-test/{}:v1", unique("model"));
    let id = ok(&c.berth(&["commit", "-m", "trained", &job, &image]));
    let cleanup = Rmi(image.clone());
    assert!(id.trim().starts_with("sha256:"), "{id}");
    assert_eq!(main_image_id(&image).as_deref(), Some(id.trim()));
    // Berth's image table has it on that host as soon as the commit
    // returned, so a save and a run right after work.
    let images = c.json(&["images"]);
    let listed = images.as_array().unwrap().iter().any(|i| {
        i["node"] == node.as_str()
            && i["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == image.as_str()))
    });
    assert!(
        listed,
        "not in berth images right after the commit: {images}"
    );
    let saved = tempfile::tempdir().unwrap();
    let file = saved.path().join("model.tar");
    ok(&c.berth(&["image", "save", &image, "-o", file.to_str().unwrap()]));
    let out = c.berth(&["run", &image, "cat", "/model.txt"]);
    assert_eq!(ok(&out), "v1\n");
    let out = c.berth(&["commit", &job, ""]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("what to call the image"));
    drop(cleanup);
}

/// Removes a test's image from the machine's daemon.
struct Rmi(String);

impl Drop for Rmi {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", "-f", &self.0]).output();
    }
}
