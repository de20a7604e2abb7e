//! A cluster of real processes: controllers (one, or a raft group) and
//! agents with simulated GPUs on loopback ports, driven by the real `berth`
//! CLI. Killed, and their containers removed, on drop.
//!
//! Secured as a real cluster is: a CA from `berth-controller tls init`,
//! node certificates from `tls issue`, and the CLI as the bootstrap admin
//! through its own config file (`Cluster::cli`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use serde_json::Value;

use crate::{bin, ensure_image, remove_node_containers, unique, wait_for, DEADLINE};

pub struct Proc {
    child: Child,
}

impl Proc {
    pub fn spawn(cmd: &mut Command, log: &Path) -> Proc {
        let log = std::fs::File::create(log).expect("log file");
        let child = cmd
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .env("RUST_LOG", "info")
            .spawn()
            .expect("spawn");
        Proc { child }
    }

    /// SIGKILL: no shutdown path runs, as in a crash or power loss.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, as systemd stops a service, and waits for the exit (a
    /// SIGKILL after 20 s). Returns how long the process took to stop.
    pub fn term(&mut self) -> std::time::Duration {
        let start = std::time::Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        while start.elapsed() < std::time::Duration::from_secs(20) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return start.elapsed();
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        self.kill9();
        start.elapsed()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One controller process slot: its id, address and data dir survive kills.
pub struct Ctl {
    pub id: u64,
    pub addr: String,
    pub dir: PathBuf,
    /// `--peers` for a replicated cluster; empty for a single controller.
    peers: String,
    /// More flags (e.g. --join, --snapshot-every).
    extra: Vec<String>,
    /// The cluster CA's directory (`--tls-dir`).
    tls: PathBuf,
    pub proc: Option<Proc>,
}

impl Ctl {
    fn spawn(&mut self) {
        let addr_file = self.dir.join("controller.addr");
        let _ = std::fs::remove_file(&addr_file);
        let mut cmd = Command::new(bin("berth-controller"));
        // The controller drops its raft traffic while this file exists.
        cmd.env("BERTH_FAULT_CUT_FILE", self.dir.join("cut"));
        cmd.args(["--listen", &self.addr, "--id", &self.id.to_string()])
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--tls-dir")
            .arg(&self.tls)
            .arg("--audit-log")
            .arg(self.dir.join("audit.log"));
        if !self.peers.is_empty() {
            cmd.args(["--peers", &self.peers]);
        }
        cmd.args(&self.extra);
        let log = self.dir.join(format!("controller-{}.log", unique("run")));
        self.proc = Some(Proc::spawn(&mut cmd, &log));
        self.addr = wait_for("controller address", DEADLINE, || {
            std::fs::read_to_string(&addr_file).ok()
        });
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }
}

/// Controllers (one, or a replicated group) and agents.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    /// Every controller's address, comma-separated, as the CLI and agents take it.
    pub addr: String,
    pub controllers: Vec<Ctl>,
    pub agents: Vec<(String, Proc)>,
    /// The cluster CA (ca.pem, ca.key, the bootstrap token's hash).
    pub tls: PathBuf,
    /// The bootstrap admin's token, which the CLI config holds.
    pub admin_token: String,
}

/// `berth-controller tls init` in `dir`, and a CLI config holding the CA and
/// the admin token. Returns the CA's directory and the token.
fn init_tls(dir: &Path) -> (PathBuf, String) {
    let tls = dir.join("tls");
    let out = Command::new(bin("berth-controller"))
        .args(["tls", "init", "--out"])
        .arg(&tls)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tls init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    std::fs::write(
        dir.join("berth.toml"),
        format!(
            "ca = {:?}\ntoken = {token:?}\n",
            tls.join("ca.pem").display().to_string()
        ),
    )
    .unwrap();
    (tls, token)
}

impl Cluster {
    /// One controller on a free loopback port.
    pub fn start() -> Cluster {
        Cluster::start_replicated(1)
    }

    /// `n` controllers forming one raft group on loopback ports.
    pub fn start_replicated(n: usize) -> Cluster {
        Cluster::start_with(n, &[])
    }

    /// `n` controllers started with `extra` flags. Automatic image GC is
    /// off unless `extra` sets it: it would evict the workload image from
    /// this machine's daemon under the other tests' feet.
    pub fn start_with(n: usize, extra: &[&str]) -> Cluster {
        Cluster::start_at("127.0.0.1", n, extra)
    }

    /// As `start_with`, the controllers listening on `host` (the root side
    /// of a `Netns`, for agents in the namespace to reach them).
    pub fn start_at(host: &str, n: usize, extra: &[&str]) -> Cluster {
        ensure_image();
        let dir = tempfile::tempdir().unwrap();
        let (tls, admin_token) = init_tls(dir.path());
        let addrs: Vec<String> = if n == 1 {
            vec![format!("{host}:0")]
        } else {
            // Free ports, released just before the controllers bind them.
            let held: Vec<_> = (0..n)
                .map(|_| std::net::TcpListener::bind(format!("{host}:0")).unwrap())
                .collect();
            held.iter()
                .map(|l| l.local_addr().unwrap().to_string())
                .collect()
        };
        let peers = if n == 1 {
            String::new()
        } else {
            addrs
                .iter()
                .enumerate()
                .map(|(i, a)| format!("{}={a}", i + 1))
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut controllers: Vec<Ctl> = addrs
            .into_iter()
            .enumerate()
            .map(|(i, addr)| {
                let cdir = dir.path().join(format!("c{}", i + 1));
                std::fs::create_dir_all(&cdir).unwrap();
                Ctl {
                    id: i as u64 + 1,
                    addr,
                    dir: cdir,
                    peers: peers.clone(),
                    extra: gc_off_unless_asked(extra),
                    tls: tls.clone(),
                    proc: None,
                }
            })
            .collect();
        for c in &mut controllers {
            c.spawn();
        }
        let addr = controllers
            .iter()
            .map(|c| c.addr.clone())
            .collect::<Vec<_>>()
            .join(",");
        let cluster = Cluster {
            dir,
            addr,
            controllers,
            agents: Vec::new(),
            tls,
            admin_token,
        };
        cluster.leader();
        cluster
    }

    /// kill -9 the (first) controller, then start it again on the same address and data dir.
    pub fn restart_controller(&mut self) {
        self.kill_controller(0);
        self.start_controller(0);
    }

    pub fn kill_controller(&mut self, i: usize) {
        self.controllers[i].kill9();
    }

    /// SIGTERM controller `i` (a planned stop) and wait for it to exit;
    /// how long that took.
    pub fn stop_controller(&mut self, i: usize) -> std::time::Duration {
        self.controllers[i]
            .proc
            .take()
            .map_or(std::time::Duration::ZERO, |mut p| p.term())
    }

    pub fn start_controller(&mut self, i: usize) {
        let before = self.controllers[i].addr.clone();
        self.controllers[i].spawn();
        assert_eq!(
            self.controllers[i].addr, before,
            "a controller must come back on its address"
        );
    }

    /// Starts a new controller with `--join` (not yet a member: add it with
    /// `berth controller add`). Returns its index.
    pub fn join_controller(&mut self, id: u64, extra: &[&str]) -> usize {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .to_string();
        let mut peers: Vec<String> = self
            .controllers
            .iter()
            .map(|c| format!("{}={}", c.id, c.addr))
            .collect();
        peers.push(format!("{id}={addr}"));
        let dir = self.dir.path().join(format!("c{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ctl = Ctl {
            id,
            addr,
            dir,
            peers: peers.join(","),
            extra: extra
                .iter()
                .map(|s| s.to_string())
                .chain(["--join".to_string()])
                .collect(),
            tls: self.tls.clone(),
            proc: None,
        };
        ctl.spawn();
        self.controllers.push(ctl);
        self.controllers.len() - 1
    }

    /// Cuts (or heals) controller `i`'s raft traffic with the others.
    pub fn cut(&self, i: usize, cut: bool) {
        let f = self.controllers[i].dir.join("cut");
        if cut {
            std::fs::write(f, "").unwrap();
        } else {
            std::fs::remove_file(f).unwrap();
        }
    }

    /// `berth controller list` as JSON, asked of the given controllers.
    pub fn members(&self, addrs: &str) -> Vec<Value> {
        let out = self
            .cli()
            .args(["--addr", addrs, "controller", "list", "--output", "json"])
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    /// Index of the current leader, waiting until one is elected.
    pub fn leader(&self) -> usize {
        wait_for("a raft leader", DEADLINE, || {
            let out = self.berth(&["controller", "list", "--output", "json"]);
            let v: Value = serde_json::from_slice(&out.stdout).ok()?;
            let id = v
                .as_array()?
                .iter()
                .find(|m| m["role"] == "leader" && m["leader"] == true)?["id"]
                .as_u64()?;
            self.controllers.iter().position(|c| c.id == id)
        })
    }

    /// Starts an agent with `gpus` simulated GPUs and waits until it is ready.
    /// Returns the node name; its foreign-process file is `self.foreign_file(name)`.
    pub fn add_agent(&mut self, gpus: u32) -> String {
        self.add_agent_with(&gpus.to_string(), &[])
    }

    /// An agent with a simulated GPU spec (`2`, `1:A100:40G`) and extra flags
    /// (`--label zone=a`).
    pub fn add_agent_with(&mut self, gpus: &str, extra: &[&str]) -> String {
        self.add_agent_env(gpus, extra, &[])
    }

    /// An agent with extra flags and environment (fault hooks).
    pub fn add_agent_env(&mut self, gpus: &str, extra: &[&str], env: &[(&str, &str)]) -> String {
        let name = unique("node");
        self.spawn_agent_full(&name, gpus, extra, env);
        self.wait_node_ready(&name);
        name
    }

    /// Starts an agent named `name` with `extra` flags (one GPU), without
    /// waiting for it.
    pub fn spawn_agent_named(&mut self, name: &str, extra: &[&str]) {
        self.spawn_agent_full(name, "1", extra, &[]);
    }

    /// The log file of `node`'s agent.
    pub fn log_of(&self, node: &str) -> PathBuf {
        self.dir.path().join(format!("{node}.log"))
    }

    pub fn foreign_file(&self, node: &str) -> PathBuf {
        self.dir.path().join(format!("{node}.foreign"))
    }

    fn spawn_agent(&mut self, name: &str, gpus: u32) {
        self.spawn_agent_with(name, &gpus.to_string(), &[]);
    }

    fn spawn_agent_with(&mut self, name: &str, gpus: &str, extra: &[&str]) {
        self.spawn_agent_full(name, gpus, extra, &[]);
    }

    /// An agent in network namespace `ns` (its data plane on the
    /// namespace's address), with `gpus` simulated GPUs; waits until ready.
    pub fn add_agent_in(&mut self, ns: &crate::Netns, gpus: &str, extra: &[&str]) -> String {
        let name = unique("node");
        let listen = format!("{}:0", ns.ns_ip);
        let mut all = vec!["--listen", listen.as_str()];
        all.extend_from_slice(extra);
        self.spawn_agent_cmd(ns.command(&bin("berth-agent")), &name, gpus, &all, &[]);
        self.wait_node_ready(&name);
        name
    }

    fn spawn_agent_full(&mut self, name: &str, gpus: &str, extra: &[&str], env: &[(&str, &str)]) {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend_from_slice(extra);
        self.spawn_agent_cmd(Command::new(bin("berth-agent")), name, gpus, &all, env);
    }

    fn spawn_agent_cmd(
        &mut self,
        mut cmd: Command,
        name: &str,
        gpus: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) {
        let foreign = self.foreign_file(name);
        if !foreign.exists() {
            std::fs::write(&foreign, "").unwrap();
        }
        let log = self.log_of(name);
        // A test that brings its own (a joining agent's) keeps it.
        if !extra.contains(&"--tls-dir") {
            cmd.arg("--tls-dir").arg(self.node_tls(name));
        }
        let p = Proc::spawn(
            cmd.arg("--audit-log")
                .arg(self.dir.path().join(format!("{name}.audit")))
                .args(["--controllers", &self.addr, "--name", name])
                .args(["--fake-gpus", gpus, "--report-every", "0.3"])
                .args(extra)
                .envs(env.iter().copied())
                .arg("--fake-foreign")
                .arg(&foreign),
            &log,
        );
        self.agents.push((name.to_string(), p));
    }

    /// kill -9 the agent of `node` and start it again under the same name.
    pub fn restart_agent(&mut self, node: &str, gpus: u32) {
        self.kill_agent(node);
        self.spawn_agent(node, gpus);
    }

    pub fn kill_agent(&mut self, node: &str) {
        if let Some(i) = self.agents.iter().position(|(n, _)| n == node) {
            let (_, mut p) = self.agents.remove(i);
            p.kill9();
        }
    }

    pub fn start_agent(&mut self, node: &str, gpus: u32) {
        self.spawn_agent(node, gpus);
    }

    pub fn wait_node_ready(&self, node: &str) {
        wait_for(&format!("node {node} ready"), DEADLINE, || {
            let nodes = self.json(&["nodes"]);
            nodes
                .as_array()?
                .iter()
                .find(|n| {
                    n["name"] == node
                        && n["status"] == "ready"
                        && n["last_seen_ms_ago"]
                            .as_i64()
                            .is_some_and(|ms| (0..1000).contains(&ms))
                })
                .map(|_| ())
        });
    }

    /// A node certificate for `name` (signed once, kept for restarts).
    pub fn node_tls(&self, name: &str) -> PathBuf {
        self.node_tls_for(name, "30d")
    }

    /// As `node_tls`, valid for `lifetime` (e.g. "6s").
    pub fn node_tls_for(&self, name: &str, lifetime: &str) -> PathBuf {
        let out_dir = self.dir.path().join(format!("{name}-tls"));
        if !out_dir.join("cert.pem").exists() {
            let out = Command::new(bin("berth-controller"))
                .args([
                    "tls",
                    "issue",
                    "--lifetime",
                    lifetime,
                    "--node",
                    name,
                    "--ca-dir",
                ])
                .arg(&self.tls)
                .arg("--out")
                .arg(&out_dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "tls issue: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out_dir
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (node, p) in &mut self.agents {
            p.kill9();
            remove_node_containers(node);
        }
        for c in &mut self.controllers {
            c.kill9();
        }
        if std::thread::panicking() {
            // Keep the logs of a failed test for whoever reads its output.
            let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap()).keep();
            eprintln!(
                "test failed: controller and agent logs kept in {}",
                kept.display()
            );
        }
    }
}

fn gc_off_unless_asked(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    if !extra.contains(&"--image-gc-high") {
        v.extend(["--image-gc-high".to_string(), "100".to_string()]);
    }
    v
}
