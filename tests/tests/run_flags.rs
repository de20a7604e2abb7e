//! What a training job asks of `docker run`, on the real daemon: every
//! flag shows in `docker inspect`, `-u` is the process's uid, host ports
//! Berth picks never clash, `--rm` leaves nothing, bad flags create
//! nothing, and CPU held per host makes a job wait (and says why).

use berth_tests::*;
use serde_json::Value;

fn container(c: &Cluster, job: &str) -> Value {
    let running = c.wait_state(job, "running");
    docker_inspect(running["container_id"].as_str().unwrap())
}

fn refused(out: &std::process::Output, says: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(says),
        "wanted {says:?}: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn docker_run_flags_reach_the_container() {
    let mut c = Cluster::start();
    c.add_agent(1);
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("train.env");
    std::fs::write(&env_file, "# the run's settings\nLR=3e-4\nEPOCHS=10\n").unwrap();
    let job = c.run_detached(&[
        "--hostname",
        "rank0",
        // memlock=-1 (unlimited, for RDMA) needs a daemon allowed to raise
        // it; this machine's dockerd has a hard limit of 8 MiB, and plain
        // `docker run --ulimit memlock=-1` fails here the same way.
        "--ulimit",
        "memlock=65536:65536",
        "--ulimit",
        "nofile=1024:2048",
        "--cap-add",
        "SYS_PTRACE",
        "--cap-drop",
        "NET_RAW",
        "--label",
        "team=vision",
        "--env-file",
        env_file.to_str().unwrap(),
        "-e",
        "EPOCHS=20",
        "--device",
        "/dev/null:/dev/berth-null:r",
        "--ipc",
        "host",
        "-u",
        "1000:1000",
        IMAGE,
        "sleep",
        "300",
    ]);
    let i = container(&c, &job);
    let host = &i["HostConfig"];
    assert_eq!(i["Config"]["Hostname"], "rank0");
    assert_eq!(i["Config"]["User"], "1000:1000");
    assert_eq!(host["IpcMode"], "host");
    assert_eq!(host["CapAdd"], serde_json::json!(["SYS_PTRACE"]));
    assert_eq!(host["CapDrop"], serde_json::json!(["NET_RAW"]));
    let ulimits: Vec<(String, i64, i64)> = host["Ulimits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["Name"].as_str().unwrap().to_string(),
                u["Soft"].as_i64().unwrap(),
                u["Hard"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(
        ulimits.contains(&("memlock".into(), 65536, 65536)),
        "{ulimits:?}"
    );
    assert!(
        ulimits.contains(&("nofile".into(), 1024, 2048)),
        "{ulimits:?}"
    );
    assert_eq!(host["Devices"][0]["PathOnHost"], "/dev/null");
    assert_eq!(host["Devices"][0]["PathInContainer"], "/dev/berth-null");
    assert_eq!(host["Devices"][0]["CgroupPermissions"], "r");
    assert_eq!(i["Config"]["Labels"]["team"], "vision");
    assert_eq!(container_env(&i, "LR").as_deref(), Some("3e-4"));
    // -e comes after the file, as docker reads them: it wins.
    assert_eq!(container_env(&i, "EPOCHS").as_deref(), Some("20"));

    let job = c.run_detached(&["--network", "host", IMAGE, "sleep", "300"]);
    let i = container(&c, &job);
    assert_eq!(i["HostConfig"]["NetworkMode"], "host");
    // This machine's daemon (itself in a container) cannot run privileged
    // containers: plain `docker run --privileged` fails the same way. The
    // job fails with docker's own words, which shows the flag reached it.
    let job = c.run_detached(&["--privileged", IMAGE, "true"]);
    let failed = c.wait_state(&job, "failed");
    assert!(
        failed["message"].as_str().unwrap().contains("caps"),
        "{failed}"
    );

    // -u is the process's uid, as docker's.
    let out = c.berth(&["run", "-u", "1000:1000", IMAGE, "id", "-u"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1000");
}

#[test]
fn host_ports_berth_picks_never_clash_and_rm_leaves_nothing() {
    let mut c = Cluster::start_with(1, &["--host-ports", "31000-31009"]);
    let node = c.add_agent(2);
    // Two -P jobs exposing 8080 on one host, one with -p 9090/udp (a
    // container port alone): Berth picks every host port.
    let a = c.run_detached(&["-P", "--expose", "8080", IMAGE, "sleep", "300"]);
    let b = c.run_detached(&[
        "-P", "--expose", "8080", "-p", "9090/udp", IMAGE, "sleep", "300",
    ]);
    let (ia, ib) = (container(&c, &a), container(&c, &b));
    let (ja, jb) = (c.job(&a), c.job(&b));
    let port_of = |j: &Value, ctr: u64| {
        j["published"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["container_port"] == ctr)
            .and_then(|p| p["host_port"].as_u64())
            .unwrap_or_else(|| panic!("{ctr} not published: {j}"))
    };
    let port = |j: &Value, i: usize| j["published"][i]["host_port"].as_u64().unwrap();
    let (pa, pb, pu) = (port_of(&ja, 8080), port_of(&jb, 8080), port_of(&jb, 9090));
    assert_ne!(pa, pb, "two -P jobs on one host got one port");
    for p in [pa, pb, pu] {
        assert!((31000..=31009).contains(&p), "{p} outside the range");
    }
    assert_eq!(ja["node"], node.as_str());
    assert_eq!(jb["node"], node.as_str());
    // What docker was told, and what the job is told.
    let bound = |i: &Value, key: &str| {
        i["HostConfig"]["PortBindings"][key][0]["HostPort"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(bound(&ia, "8080/tcp"), pa);
    assert_eq!(bound(&ib, "8080/tcp"), pb);
    assert_eq!(bound(&ib, "9090/udp"), pu);
    assert_eq!(
        container_env(&ia, "BERTH_HOST_PORT_8080"),
        Some(pa.to_string())
    );
    assert_eq!(
        container_env(&ib, "BERTH_HOST_PORT_9090_UDP"),
        Some(pu.to_string())
    );
    let ps = String::from_utf8_lossy(&c.berth(&["ps"]).stdout).to_string();
    assert!(ps.contains(&format!("0.0.0.0:{pa}->8080/tcp")), "{ps}");

    // -P also publishes the image's own EXPOSE ports, as docker's.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {IMAGE}\nEXPOSE 7777\n"),
    )
    .unwrap();
    let tag = format!("{}:1", unique("exposes"));
    let built = c.berth(&["build", "-t", &tag, dir.path().to_str().unwrap()]);
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let e = c.run_detached(&["-P", &tag, "sleep", "300"]);
    c.wait_state(&e, "running");
    let je = c.job(&e);
    assert_eq!(je["published"][0]["container_port"], 7777, "{je}");
    assert!((31000..=31009).contains(&port(&je, 0)));
    c.berth(&["stop", &e]);

    // --rm: once the exit is recorded, the container goes.
    let gone = c.run_detached(&["--rm", IMAGE, "sh", "-c", "exit 3"]);
    let done = c.wait_state(&gone, "exited");
    assert_eq!(done["exit_code"], 3, "the exit is recorded first");
    let id = done["container_id"].as_str().unwrap().to_string();
    wait_for("the --rm container removed", DEADLINE, || {
        docker_inspect_opt(&id).is_none().then_some(())
    });
    let kept = c.run_detached(&[IMAGE, "true"]);
    let kept = c.wait_state(&kept, "exited");
    assert!(docker_inspect_opt(kept["container_id"].as_str().unwrap()).is_some());
    wait_for("the -P job gone", DEADLINE, || {
        (c.job(&e)["state"] == "cancelled").then_some(())
    });
    let _ = std::process::Command::new("docker")
        .args(["rmi", "-f", &tag])
        .output();
}

#[test]
fn bad_flags_are_refused_and_create_nothing() {
    let mut c = Cluster::start();
    c.add_agent(1);
    let before = c.json(&["ps", "-a"]).as_array().unwrap().len();
    let run = |extra: &[&str]| c.berth(&[&["run", "-d"], extra, &[IMAGE, "true"]].concat());
    refused(&run(&["--ulimit", "nofile=abc"]), "not a number");
    refused(&run(&["--ulimit", "stack"]), "NAME=SOFT[:HARD]");
    refused(&run(&["--device", "relative"]), "must be absolute");
    refused(&run(&["--ipc", "bogus"]), "bogus");
    refused(&run(&["--env-file", "/no/such.env"]), "cannot read");
    refused(&run(&["--label", "berth.job=x"]), "Berth's own");
    refused(&run(&["--hostname=-x"]), "--hostname");
    refused(&run(&["-P"]), "--expose");
    refused(&run(&["--gpus", "many"]), "number of GPUs or all");
    refused(&run(&["--cpus", "64"]), "no host has that many CPUs");
    refused(&run(&["-m", "100t"]), "no host has that much memory");
    assert_eq!(
        c.json(&["ps", "-a"]).as_array().unwrap().len(),
        before,
        "a refused run created a job"
    );
}

#[test]
fn cpu_is_held_per_host_and_a_job_waits_for_it() {
    let mut c = Cluster::start();
    let node = c.add_agent_with("2", &["--cpus", "2", "--memory", "4g"]);
    let first = c.run_detached(&["--cpus", "2", IMAGE, "sleep", "300"]);
    let running = c.wait_state(&first, "running");
    assert_eq!(running["reserved"]["cpus"], 2.0);
    let second = c.run_detached(&["--cpus", "1", IMAGE, "true"]);
    let why = wait_for("explain says CPU", DEADLINE, || {
        let out = c.berth(&["explain", &second]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.contains("not enough CPU").then_some(text)
    });
    assert!(why.contains(&node), "{why}");
    assert_eq!(c.job(&second)["state"], "queued");
    // A dry run says the same, and creates nothing.
    let plan = c.berth(&["run", "--dry-run", "--cpus", "1", IMAGE, "true"]);
    let text = String::from_utf8_lossy(&plan.stdout).to_string();
    assert!(text.contains("not enough CPU (1 CPU asked)"), "{text}");
    let nodes = c.json(&["nodes"]);
    let n = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == node.as_str())
        .unwrap();
    assert_eq!(
        (n["cpus"].as_f64(), n["cpus_held"].as_f64()),
        (Some(2.0), Some(2.0))
    );
    assert_eq!(n["memory_bytes"], 4u64 << 30);
    // A GPU job without --cpus holds its host's share per GPU (1 of 2 CPUs
    // per GPU here): it waits too, and starts when the CPU is free.
    let gpu = c.run_detached(&["--gpus", "1", IMAGE, "true"]);
    c.berth(&["stop", &first]);
    let done = c.wait_state(&second, "exited");
    assert_eq!(done["reserved"]["cpus"], 1.0);
    let gpu = c.wait_state(&gpu, "exited");
    assert_eq!(gpu["reserved"]["cpus"], 1.0);
    assert_eq!(gpu["reserved"]["memory_bytes"], 2u64 << 30);
}
