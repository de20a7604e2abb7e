//! `berth submit FILE` and `--dry-run` (for run and submit) against a real
//! controller and agent.

use berth_tests::*;

fn job_count(c: &Cluster) -> usize {
    c.json(&["ps", "-a"]).as_array().unwrap().len()
}

#[test]
fn dry_runs_say_where_and_why_and_create_nothing() {
    let mut c = Cluster::start();
    let node = c.add_agent(1);
    let out = c.berth(&["run", "--dry-run", "--gpus", "1", IMAGE, "true"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("placeable now") && text.contains(&node),
        "{text}"
    );
    assert_eq!(job_count(&c), 0, "a dry run creates nothing");
    // With the GPU taken, it says why it would wait, host by host.
    let busy = c.run_detached(&["--gpus", "1", IMAGE, "sleep", "300"]);
    c.wait_state(&busy, "running");
    // (-o before run: after the image, flags belong to the command.)
    let out = c.berth(&[
        "-o",
        "json",
        "run",
        "--dry-run",
        "--gpus",
        "1",
        IMAGE,
        "true",
    ]);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        !plan["summary"].as_str().unwrap().contains("placeable now"),
        "{plan}"
    );
    let reasons = plan["hosts"].to_string();
    assert!(
        reasons.contains("too few free GPUs") || reasons.contains("GPU"),
        "{plan}"
    );
    // Impossible requests are refused exactly as a submit refuses them.
    let out = c.berth(&["run", "--dry-run", "--gpus", "9", IMAGE, "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("GPU"));
    assert_eq!(job_count(&c), 1);
}

#[test]
fn a_job_file_submits_all_its_jobs_or_none() {
    let mut c = Cluster::start();
    c.add_agent(2);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jobs.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[[job]]
name = "{a}"
image = "{IMAGE}"
command = "echo prep; exit 0"

[[job]]
name = "{b}"
image = "{IMAGE}"
command = ["sh", "-c", "echo train $LR; exit 3"]
gpus = 1
shm_size = "256m"
env = {{ LR = "3e-4" }}
"#,
            a = unique("prep"),
            b = unique("train")
        ),
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let plan = c.berth(&["submit", f, "--dry-run"]);
    assert!(
        String::from_utf8_lossy(&plan.stdout)
            .matches("placeable now")
            .count()
            == 2
    );
    assert_eq!(job_count(&c), 0);

    let out = c.berth(&["submit", f, "--wait"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the first non-zero exit code: {out:?}"
    );
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    let logs = c.berth(&["logs", &ids[1]]);
    assert_eq!(String::from_utf8_lossy(&logs.stdout), "train 3e-4\n");
    let train = c.job(&ids[1]);
    assert_eq!(train["spec"]["shm_size_bytes"], 256 << 20);

    // A bad job anywhere in the file: nothing at all is submitted.
    let before = job_count(&c);
    std::fs::write(
        &file,
        format!("[[job]]\nimage = \"{IMAGE}\"\n\n[[job]]\nimage = \"{IMAGE}\"\ngpus = 99\n"),
    )
    .unwrap();
    let out = c.berth(&["submit", f]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was submitted"));
    std::fs::write(&file, format!("[[job]]\nimage = \"{IMAGE}\"\ngpuz = 1\n")).unwrap();
    let out = c.berth(&["submit", f]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("gpuz") && err.contains("nothing was submitted"),
        "{err}"
    );
    assert_eq!(job_count(&c), before);
}

#[test]
fn run_wait_and_timeout_for_pipelines() {
    let mut c = Cluster::start();
    c.add_agent(1);
    // --wait: no output streamed, the job's exit code as ours.
    let out = c.berth(&["run", "--wait", IMAGE, "sh", "-c", "echo noisy; exit 4"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stdout).is_empty());
    // --timeout: stopped when the time is up, 124 as timeout(1) says.
    let started = std::time::Instant::now();
    let name = unique("slow");
    let out = c.berth(&[
        "run",
        "--timeout",
        "2s",
        "--name",
        &name,
        IMAGE,
        "sleep",
        "60",
    ]);
    assert_eq!(out.status.code(), Some(124), "{out:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(40));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did not finish within 2s"));
    let job = c.wait_state(&name, "cancelled");
    assert_eq!(job["name"], name.as_str());
    let out = c.berth(&["run", "--timeout", "soon", IMAGE, "true"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a bad duration is a usage error"
    );
}
