//! A gang whose ranks really talk: two "hosts" (network namespaces, each
//! with its own Docker daemon, so a host-network container has that
//! host's address), one agent on each. Rank 1 connects to rank 0 at
//! MASTER_ADDR:MASTER_PORT over TCP, as torchrun's rendezvous does, and
//! the attached `berth run` shows both ranks' output, labelled by rank.

use berth_tests::*;

#[test]
fn a_gangs_ranks_on_two_hosts_reach_each_other_through_master_addr() {
    let (a, b) = (Netns::new(), Netns::new());
    a.route_to(&b);
    let (da, db) = (Dockerd::start_in(&a), Dockerd::start_in(&b));
    let mut c = Cluster::start_at(&a.host_ip, 1, &[]);
    let sock = |d: &Dockerd| d.socket().display().to_string();
    let (sa, sb) = (sock(&da), sock(&db));
    let ha = c.add_agent_in(
        &a,
        "1",
        &["--docker", &sa, "--nccl-socket-ifname", &a.ns_if],
    );
    let hb = c.add_agent_in(
        &b,
        "1",
        &["--docker", &sb, "--nccl-socket-ifname", &b.ns_if],
    );
    let name = unique("ranks");
    // Rank 0 listens on its host's MASTER_PORT; rank 1 connects until
    // it is up (the ranks start in either order), as NCCL's bootstrap does.
    let script = "echo rank $RANK iface $NCCL_SOCKET_IFNAME; \
        if [ $RANK = 0 ]; then \
          echo got $(nc -l -p $MASTER_PORT); \
        else \
          until echo hello-from-rank-1 | nc -w 2 $MASTER_ADDR $MASTER_PORT; do sleep 0.2; done; \
          echo sent to $MASTER_ADDR; \
        fi";
    let out = c.berth(&[
        "run", "--nodes", "2", "--gpus", "1", "--name", &name, IMAGE, "sh", "-c", script,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{:?}\n{stdout}\n{stderr}", out.status);
    let (t0, t1) = (c.job(&format!("{name}.0")), c.job(&format!("{name}.1")));
    // Either host may get rank 0.
    let (r0, r1) = if t0["node"] == ha.as_str() {
        (&a, &b)
    } else {
        (&b, &a)
    };
    let mut hosts = [t0["node"].as_str().unwrap(), t1["node"].as_str().unwrap()];
    hosts.sort();
    let mut want = [ha.as_str(), hb.as_str()];
    want.sort();
    assert_eq!(hosts, want, "one rank on each host");
    // Each line labelled with its rank, as srun --label does.
    assert!(stdout.contains("0: got hello-from-rank-1"), "{stdout}");
    assert!(
        stdout.contains(&format!("1: sent to {}", r0.ns_ip)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("0: rank 0 iface {}", r0.ns_if)),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("1: rank 1 iface {}", r1.ns_if)),
        "{stdout}"
    );
    assert_eq!(
        (t0["exit_code"].as_i64(), t1["exit_code"].as_i64()),
        (Some(0), Some(0))
    );
    // The default network of a gang is the host's; MASTER_ADDR is rank 0's
    // host; the rendezvous port is held on it like any published port.
    assert_eq!(t0["spec"]["network"], "host");
    let env = |key: &str| {
        t0["task_env"].as_array().unwrap().iter().find_map(|e| {
            e.as_str()?
                .strip_prefix(&format!("{key}="))
                .map(String::from)
        })
    };
    assert_eq!(env("MASTER_ADDR"), Some(r0.ns_ip.clone()));
    let port = env("MASTER_PORT").unwrap();
    assert_eq!(t0["published"][0]["host_port"].to_string(), port);
    assert!((30000..=32767).contains(&port.parse::<u32>().unwrap()));

    // berth logs GROUP: every rank's output, labelled.
    let logs = c.berth(&["logs", &name]);
    let text = String::from_utf8_lossy(&logs.stdout).to_string();
    assert!(text.contains("0: got hello-from-rank-1"), "{text}");
    assert!(text.contains("1: sent to"), "{text}");
}
