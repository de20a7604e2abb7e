//! Scheduling end to end on the real Docker daemon: a gang on two agents, a
//! preemption, a job array under its concurrency cap, a shared-GPU pair, and
//! the submit-time refusals of impossible requests.

use berth_tests::*;
use serde_json::Value;

fn env_of(job: &Value, key: &str) -> Option<String> {
    container_env(&docker_inspect(job["container_id"].as_str()?), key)
}

fn sh(script: String) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script]
}

/// Waits for gate file `$1`, then exits with `$2` (TERM exits 143).
fn gated(gate: &str, code: &str) -> String {
    format!("trap 'exit 143' TERM; while [ ! -f /gates/{gate} ]; do sleep 0.05; done; exit {code}")
}

#[test]
fn gang_runs_on_two_agents_with_rendezvous_env_and_fails_together() {
    let mut c = Cluster::start();
    let a = c.add_agent(1);
    let b = c.add_agent(1);
    let gates = Gates::new();
    let name = unique("gang");
    // Rank 0 fails when its gate opens; rank 1 would run forever.
    let script = format!(
        "echo rank $RANK of $WORLD_SIZE via $MASTER_ADDR:$MASTER_PORT; if [ $RANK = 0 ]; then {}; else {}; fi",
        gated(&format!("{name}-fail"), "3"),
        gated("never", "0")
    );
    let group = c.run_detached(&args(
        &[
            "--nodes",
            "2",
            "--gpus",
            "1",
            "--master-port",
            "29999",
            "-v",
            &gates.mount(),
            "--name",
            &name,
            IMAGE,
        ],
        &sh(script),
    ));
    let t0 = c.wait_state(&format!("{name}.0"), "running");
    let t1 = c.wait_state(&format!("{name}.1"), "running");
    let hosts = [t0["node"].as_str().unwrap(), t1["node"].as_str().unwrap()];
    assert!(
        hosts.contains(&a.as_str()) && hosts.contains(&b.as_str()),
        "tasks on {hosts:?}"
    );
    assert_eq!(t0["group_id"], group.as_str());
    for (rank, t) in [&t0, &t1].iter().enumerate() {
        assert_eq!(env_of(t, "WORLD_SIZE").as_deref(), Some("2"));
        assert_eq!(env_of(t, "NODE_RANK"), Some(rank.to_string()));
        assert_eq!(env_of(t, "RANK"), Some(rank.to_string()));
        assert_eq!(env_of(t, "MASTER_PORT").as_deref(), Some("29999"));
        // Agents here listen on loopback: rank 0's host address.
        assert_eq!(env_of(t, "MASTER_ADDR").as_deref(), Some("127.0.0.1"));
    }
    gates.open(&format!("{name}-fail"));
    let t1 = c.wait_state(&format!("{name}.1"), "cancelled");
    assert!(
        t1["message"].as_str().unwrap().contains("torn down"),
        "{t1}"
    );
    let out = c.berth(&["wait", &name]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "3",
        "group exit code"
    );
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn a_high_priority_job_preempts_a_preemptible_one_which_requeues() {
    let mut c = Cluster::start();
    c.add_agent(2);
    let gates = Gates::new();
    let low = unique("low");
    let high = unique("high");
    let low_id = c.run_detached(&args(
        &[
            "--gpus",
            "2",
            "--preemptible",
            "-v",
            &gates.mount(),
            "--name",
            &low,
            IMAGE,
        ],
        &sh(gated("never", "0")),
    ));
    let first = c.wait_state(&low_id, "running");
    let first_container = first["container_id"].as_str().unwrap().to_string();
    let high_id = c.run_detached(&args(
        &[
            "--gpus",
            "1",
            "--priority",
            "10",
            "-v",
            &gates.mount(),
            "--name",
            &high,
            IMAGE,
        ],
        &sh(gated(&high, "0")),
    ));
    c.wait_state(&high_id, "running");
    let requeued = c.wait_state(&low_id, "queued");
    assert_eq!(requeued["preemptions"], 1, "{requeued}");
    assert!(
        docker_inspect_opt(&first_container).is_none_or(|i| i["State"]["Running"] == false),
        "the preempted container must be stopped"
    );
    // While it waits, explain says why.
    let e = c.json(&["explain", &low_id]);
    let reasons: Vec<&str> = e["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["reason"].as_str().unwrap())
        .collect();
    assert!(reasons.contains(&"too few free GPUs"), "{e}");
    gates.open(&high);
    c.wait_state(&high_id, "exited");
    let back = c.wait_state(&low_id, "running");
    assert_ne!(
        back["container_id"].as_str().unwrap(),
        first_container,
        "a fresh container"
    );
}

#[test]
fn an_array_runs_at_most_its_cap_at_once() {
    let mut c = Cluster::start();
    c.add_agent(4);
    let gates = Gates::new();
    let name = unique("arr");
    let group = c.run_detached(&args(
        &[
            "--array",
            "0-3%2",
            "--gpus",
            "1",
            "-v",
            &gates.mount(),
            "--name",
            &name,
            IMAGE,
        ],
        &sh(format!(
            "echo index $BERTH_ARRAY_INDEX; {}",
            gated(&format!("{name}-$BERTH_ARRAY_INDEX"), "0")
        )),
    ));
    let tasks: Vec<String> = (0..4).map(|i| format!("{name}.{i}")).collect();
    let states = |c: &Cluster| -> Vec<String> {
        tasks
            .iter()
            .map(|t| c.job(t)["state"].as_str().unwrap().to_string())
            .collect()
    };
    wait_for("two array tasks running", DEADLINE, || {
        let s = states(&c);
        (s.iter().filter(|s| *s == "running").count() == 2).then_some(())
    });
    // Though 4 GPUs are free, the cap keeps the other two queued.
    let s = states(&c);
    assert_eq!(s.iter().filter(|s| *s == "queued").count(), 2, "{s:?}");
    // `berth ps` folds the array into one line; --tasks lists each task.
    let out = c.berth(&["ps"]);
    let table = String::from_utf8_lossy(&out.stdout);
    let line = table
        .lines()
        .find(|l| l.contains(&format!("{name}[0-3]")))
        .unwrap_or_else(|| panic!("no array line: {table}"));
    assert!(
        line.contains("4 tasks: ") && line.contains("2 running") && line.contains("2 queued"),
        "{table}"
    );
    assert_eq!(
        table.lines().filter(|l| l.contains(&name)).count(),
        1,
        "{table}"
    );
    let out = c.berth(&["ps", "--tasks"]);
    let each = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        each.lines()
            .filter(|l| l.contains(&format!("{name}.")))
            .count(),
        4,
        "{each}"
    );
    let running: Vec<&String> = tasks
        .iter()
        .zip(&s)
        .filter(|(_, s)| *s == "running")
        .map(|(t, _)| t)
        .collect();
    let index = env_of(&c.job(running[0]), "BERTH_ARRAY_INDEX").unwrap();
    assert_eq!(running[0], &format!("{name}.{index}"));
    // Let them finish one by one: the next starts, never more than two at once.
    for (i, task) in tasks.iter().enumerate() {
        gates.open(&format!("{name}-{i}"));
        c.wait_state(task, "exited");
        let s = states(&c);
        assert!(
            s.iter()
                .filter(|s| *s == "running" || *s == "placed")
                .count()
                <= 2,
            "{s:?}"
        );
    }
    let out = c.berth(&["wait", &group]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(states(&c).iter().all(|s| s == "exited"));
}

#[test]
fn two_slice_jobs_share_one_gpu_and_a_third_waits() {
    let mut c = Cluster::start();
    c.add_agent_with("1:A100:40G", &[]);
    let gates = Gates::new();
    let ids: Vec<String> = (0..2)
        .map(|i| {
            let n = unique(&format!("slice{i}"));
            c.run_detached(&args(
                &[
                    "--gpu-mem",
                    "16G",
                    "-v",
                    &gates.mount(),
                    "--name",
                    &n,
                    IMAGE,
                ],
                &sh(gated("open", "0")),
            ))
        })
        .collect();
    let j: Vec<Value> = ids.iter().map(|id| c.wait_state(id, "running")).collect();
    let uuid0 = env_of(&j[0], "NVIDIA_VISIBLE_DEVICES").unwrap();
    assert!(uuid0.starts_with("GPU-"));
    assert_eq!(
        env_of(&j[1], "NVIDIA_VISIBLE_DEVICES").unwrap(),
        uuid0,
        "one GPU, shared"
    );
    assert_eq!(
        env_of(&j[0], "BERTH_GPU_MEMORY_BYTES").as_deref(),
        Some("17179869184")
    );
    let nodes = c.json(&["nodes"]);
    assert_eq!(
        nodes[0]["gpus"][0]["slices"].as_array().unwrap().len(),
        2,
        "{nodes}"
    );
    // 32G of 40G reserved: neither another 16G slice nor a whole GPU fits.
    let third = c.run_detached(&args(&["--gpu-mem", "16G", IMAGE], &sh("true".into())));
    let whole = c.run_detached(&args(&["--gpus", "1", IMAGE], &sh("true".into())));
    let e = c.json(&["explain", &third]);
    assert_eq!(
        e["hosts"][0]["reason"], "no GPU with 16GiB unreserved",
        "{e}"
    );
    assert_eq!(c.job(&whole)["state"], "queued");
    gates.open("open");
    c.wait_state(&third, "exited");
    c.wait_state(&whole, "exited");
}

#[test]
fn impossible_requests_are_refused_at_submit_with_the_reason() {
    let mut c = Cluster::start();
    c.add_agent_with("2:A100:40G", &["--label", "zone=rack1"]);
    c.add_agent_with("2:A100:40G", &[]);
    let refused = |flags: &[&str], want: &str| {
        let out = c.berth(&[&["run", "-d"], flags, &[IMAGE, "true"]].concat());
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_ne!(out.status.code(), Some(0), "{flags:?} was accepted");
        assert!(err.contains(want), "{flags:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{err}"
        );
    };
    refused(
        &["--gpus", "1", "--gpu-model", "V100"],
        "no host has a V100 GPU; the models here are: A100",
    );
    refused(
        &["--gpus", "1", "--gpu-mem", "80G"],
        "no GPU has 80GiB of memory: the largest has 40GiB",
    );
    refused(&["--gpu-mem", "41G"], "no GPU has 41GiB of memory");
    refused(
        &["--constraint", "zone=rack9"],
        "no host matches --constraint zone=rack9",
    );
    refused(
        &["--nodes", "3", "--gpus", "1"],
        "a gang of 3 needs 3 hosts with 1 GPUs each; only 2 host(s) qualify",
    );
    refused(&["--nodes", "5000"], "--nodes 5000 is out of range");
    refused(&["--array", "5-1"], "the end (1) is before the start (5)");
    refused(&["--array", "0-20000"], "at most 10000 per array");
    refused(
        &["--nodes", "2", "--preemptible"],
        "a gang cannot be --preemptible",
    );
    // Nothing was created by any of them.
    assert_eq!(c.json(&["ps", "-a"]).as_array().unwrap().len(), 0);
    // And a satisfiable constraint is placed on the labelled host only.
    let id = c.run_detached(&["--constraint", "zone=rack1", IMAGE, "true"]);
    let j = c.wait_state(&id, "exited");
    let labelled = c
        .json(&["nodes"])
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["labels"][0] == "zone=rack1")
        .unwrap()["name"]
        .clone();
    assert_eq!(j["node"], labelled);
}
