//! Crash safety: kill -9 the controller or an agent, start it again, and
//! nothing is lost, duplicated or orphaned.

use berth_tests::*;

#[test]
fn controller_restart_keeps_jobs_and_allocations() {
    let mut c = Cluster::start();
    let node = c.add_agent(2);
    let gates = Gates::new();
    let m = gates.mount();
    let names: Vec<String> = (1..=3).map(|i| unique(&format!("cr{i}"))).collect();
    let cmds: Vec<Vec<String>> = names.iter().map(|n| Gates::job_cmd(n, 0)).collect();
    let ids: Vec<String> = (0..3)
        .map(|i| {
            c.run_detached(&args(
                &["--gpus", "1", "-v", &m, "--name", &names[i], IMAGE],
                &cmds[i],
            ))
        })
        .collect();
    c.wait_state(&ids[0], "running");
    c.wait_state(&ids[1], "running");
    let before: Vec<_> = ids.iter().map(|id| c.job(id)).collect();

    c.restart_controller();

    for (id, b) in ids.iter().zip(&before) {
        let a = c.job(id);
        for k in ["state", "node", "gpus", "container_id", "name"] {
            assert_eq!(a[k], b[k], "job {id}: {k} changed across the restart");
        }
    }
    // The agent reconnects; the queued job still waits for a GPU, then takes the freed one.
    c.wait_node_ready(&node);
    assert_eq!(c.job(&ids[2])["state"], "queued");
    gates.open(&names[0]);
    c.wait_state(&ids[0], "exited");
    let j3 = c.wait_state(&ids[2], "running");
    assert_eq!(j3["gpus"], before[0]["gpus"]);
    assert_eq!(
        docker_containers(&node).len(),
        3,
        "one container per job, no duplicates"
    );
    gates.open(&names[1]);
    gates.open(&names[2]);
    c.wait_state(&ids[1], "exited");
    c.wait_state(&ids[2], "exited");
}

#[test]
fn agent_restart_adopts_containers_without_duplicates() {
    let mut c = Cluster::start();
    let node = c.add_agent(2);
    let gates = Gates::new();
    let m = gates.mount();
    let (a, b) = (unique("ar-a"), unique("ar-b"));
    let (ca, cb) = (Gates::job_cmd(&a, 5), Gates::job_cmd(&b, 0));
    let ja = c.run_detached(&args(&["--gpus", "1", "-v", &m, "--name", &a, IMAGE], &ca));
    let jb = c.run_detached(&args(&["--gpus", "1", "-v", &m, "--name", &b, IMAGE], &cb));
    let before_a = c.wait_state(&ja, "running");
    c.wait_state(&jb, "running");

    // While the agent is dead, job a's container exits on its own.
    c.kill_agent(&node);
    gates.open(&a);
    c.start_agent(&node, 2);
    c.wait_node_ready(&node);

    let after_a = c.wait_state(&ja, "exited");
    assert_eq!(
        after_a["exit_code"], 5,
        "the exit that happened while the agent was down is reported"
    );
    assert_eq!(after_a["container_id"], before_a["container_id"]);
    let after_b = c.job(&jb);
    assert_eq!(
        after_b["state"], "running",
        "a running container is adopted, not restarted"
    );
    assert_eq!(
        docker_containers(&node).len(),
        2,
        "no container was created twice"
    );

    // Restart once more while b runs: still one container for b.
    c.restart_agent(&node, 2);
    c.wait_node_ready(&node);
    assert_eq!(docker_containers(&node).len(), 2);
    gates.open(&b);
    c.wait_state(&jb, "exited");
}
