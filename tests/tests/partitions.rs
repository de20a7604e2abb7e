//! Partitions and failovers with real packet loss: a host cut off silently
//! (its namespace's traffic dropped) never leaves two copies of a job
//! running; a leader whose packets vanish is left behind by agents and the
//! CLI; a leader killed mid-stream costs no client a failed or doubled
//! submission.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_tests::*;

/// Running containers per job, sampled from the daemon every 100 ms until
/// stopped: the most ever seen at once for each job.
struct Sampler {
    stop: Arc<AtomicBool>,
    most: Arc<Mutex<Vec<(String, usize)>>>,
    samples: Arc<Mutex<usize>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(jobs: &[String]) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let most: Arc<Mutex<Vec<(String, usize)>>> =
            Arc::new(Mutex::new(jobs.iter().map(|j| (j.clone(), 0)).collect()));
        let samples = Arc::new(Mutex::new(0));
        let (s, m, n) = (stop.clone(), most.clone(), samples.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let out = Command::new("docker")
                    .args([
                        "ps",
                        "--filter",
                        "label=berth.job",
                        "--format",
                        "{{.Label \"berth.job\"}}",
                    ])
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stdout).to_string();
                for (job, most) in m.lock().unwrap().iter_mut() {
                    *most = (*most).max(text.lines().filter(|l| l.trim() == job).count());
                }
                *n.lock().unwrap() += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Sampler {
            stop,
            most,
            samples,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (Vec<(String, usize)>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        let most = self.most.lock().unwrap().clone();
        let n = *self.samples.lock().unwrap();
        (most, n)
    }
}

#[test]
fn a_partitioned_host_never_leaves_two_copies_and_wait_jobs_are_adopted() {
    let ns = Netns::new();
    // Lost after 12 s: the agent fences at 6 s, its stops take at most 3 s.
    let mut c = Cluster::start_at(&ns.host_ip, 1, &["--node-lost-after", "12s"]);
    let a = c.add_agent_in(&ns, "2", &[]);
    let moving = c.run_detached(&["--gpus", "1", "--restart", "always", IMAGE, "sleep", "600"]);
    let waiting = c.run_detached(&[
        "--gpus",
        "1",
        "--on-host-lost",
        "wait",
        IMAGE,
        "sleep",
        "600",
    ]);
    let waiting_container = c.wait_state(&waiting, "running")["container_id"].clone();
    assert_eq!(c.wait_state(&moving, "running")["node"], a.as_str());
    let b = c.add_agent(2);
    let sampler = Sampler::start(&[moving.clone(), waiting.clone()]);

    let cut = Instant::now();
    ns.cut();
    let moved = wait_for(
        "the restart job running on the other host",
        Duration::from_secs(60),
        || {
            let j = c.job(&moving);
            (j["state"] == "running" && j["node"] == b.as_str()).then_some(j)
        },
    );
    let moved_after = cut.elapsed();
    assert_eq!(moved["restarts"], 1, "a new attempt there: {moved}");
    // The wait job is still the one on A, held for it, running.
    let w = c.job(&waiting);
    assert_eq!(
        (w["state"].as_str(), w["node"].as_str()),
        (Some("running"), Some(a.as_str()))
    );
    ns.heal();
    c.wait_node_ready(&a);
    let healed = cut.elapsed();
    // Adopted, not restarted: same container, no restart, still running.
    let w = wait_for("the wait job seen again on its host", DEADLINE, || {
        let w = c.job(&waiting);
        (w["state"] == "running").then_some(w)
    });
    assert_eq!(w["container_id"], waiting_container);
    assert_eq!(w["restarts"], 0, "{w}");
    std::thread::sleep(Duration::from_secs(2));
    let (most, samples) = sampler.finish();
    eprintln!(
        "partition: restart job running on {b} after {:.1} s; healed at {:.1} s; {samples} docker ps samples; most copies at once: {most:?}",
        moved_after.as_secs_f64(),
        healed.as_secs_f64()
    );
    assert!(samples > 50, "the sampler ran ({samples} samples)");
    // A's own agent stopped the restart job: nothing else could reach it.
    let log = std::fs::read_to_string(c.log_of(&a)).unwrap();
    assert!(log.contains("(fencing)"), "the agent fenced");
    for (job, n) in most {
        assert_eq!(n, 1, "job {job}: {n} containers ran at once");
    }
    assert_eq!(c.job(&waiting)["state"], "running");
}

/// DROP rules for one loopback port, removed on drop.
struct Blackhole(String);

impl Blackhole {
    fn port(port: &str) -> Blackhole {
        for args in [["--dport", port], ["--sport", port]] {
            let ok = Command::new("iptables")
                .args(["-I", "INPUT", "-i", "lo", "-p", "tcp"])
                .args(args)
                .args(["-j", "DROP"])
                .status()
                .unwrap()
                .success();
            assert!(ok, "iptables");
        }
        Blackhole(port.to_string())
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        for args in [["--dport", &self.0], ["--sport", &self.0]] {
            let _ = Command::new("iptables")
                .args(["-D", "INPUT", "-i", "lo", "-p", "tcp"])
                .args(args)
                .args(["-j", "DROP"])
                .status();
        }
    }
}

#[test]
fn agents_and_the_cli_leave_a_leader_whose_packets_vanish() {
    let mut c = Cluster::start_replicated(3);
    let node = c.add_agent(1);
    let old = c.leader();
    let port = c.controllers[old]
        .addr
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let others: Vec<String> = (0..3)
        .filter(|i| *i != old)
        .map(|i| c.controllers[i].addr.clone())
        .collect();
    // The CLI keeps the dropped leader first in its list.
    let addrs = format!("{},{}", c.controllers[old].addr, others.join(","));
    let dropped = Instant::now();
    let hole = Blackhole::port(&port);
    // A new leader among the others...
    let new_leader = wait_for("a new leader", DEADLINE, || {
        let out = c
            .cli()
            .args([
                "--addr",
                &others.join(","),
                "controller",
                "list",
                "--output",
                "json",
            ])
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v.as_array()?
            .iter()
            .find(|m| {
                m["role"] == "leader" && m["leader"] == true && m["id"] != c.controllers[old].id
            })
            .map(|m| m["id"].clone())
    });
    let elected = dropped.elapsed();
    // ...which the agent reports to...
    wait_for("the agent reporting to the new leader", DEADLINE, || {
        let out = c
            .cli()
            .args(["--addr", &others.join(","), "nodes", "--output", "json"])
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v.as_array()?
            .iter()
            .any(|n| {
                n["name"] == node.as_str()
                    && n["last_seen_ms_ago"]
                        .as_i64()
                        .is_some_and(|ms| (0..1000).contains(&ms))
            })
            .then_some(())
    });
    let agent_moved = dropped.elapsed();
    // ...and the CLI, given the silent one first, finds too.
    let t = Instant::now();
    let out = c
        .cli()
        .args(["--addr", &addrs, "run", "-d", IMAGE, "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let cli_took = t.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "leader {} dropped: new leader {new_leader} after {:.1} s, agent reporting to it after {:.1} s, a CLI submit through the list took {:.1} s",
        c.controllers[old].id,
        elected.as_secs_f64(),
        agent_moved.as_secs_f64(),
        cli_took.as_secs_f64()
    );
    drop(hole);
}

#[test]
fn killing_the_leader_under_four_submit_loops_fails_and_doubles_nothing() {
    let mut c = Cluster::start_replicated(3);
    c.add_agent(2);
    let per_loop = 12;
    let started = Arc::new(AtomicBool::new(false));
    let (addr, config) = (c.addr.clone(), c.config_path());
    let loops: Vec<_> = (0..4)
        .map(|l| {
            let (addr, config, started) = (addr.clone(), config.clone(), started.clone());
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                for i in 0..per_loop {
                    let out = Command::new(bin("berth"))
                        .env("BERTH_CONFIG", &config)
                        .env_remove("BERTH_TOKEN")
                        .args([
                            "--addr",
                            &addr,
                            "run",
                            "-d",
                            "--name",
                            &format!("loop{l}-{i}"),
                            IMAGE,
                            "true",
                        ])
                        .stdin(Stdio::null())
                        .output()
                        .unwrap();
                    if !out.status.success() {
                        failures.push(String::from_utf8_lossy(&out.stderr).to_string());
                    }
                    if i == 2 {
                        started.store(true, Ordering::Relaxed);
                    }
                }
                failures
            })
        })
        .collect();
    wait_for("the loops under way", DEADLINE, || {
        started.load(Ordering::Relaxed).then_some(())
    });
    let leader = c.leader();
    c.kill_controller(leader);
    let failures: Vec<String> = loops.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert!(failures.is_empty(), "submissions failed: {failures:?}");
    let jobs = c.json(&["ps", "-a"]);
    let mut names: Vec<String> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    let total = names.len();
    names.dedup();
    assert_eq!(total, 4 * per_loop, "every submission made exactly one job");
    assert_eq!(names.len(), total, "no job was created twice");
}
