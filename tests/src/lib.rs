//! End-to-end harness: starts the real `berth-controller` and `berth-agent`
//! binaries against this machine's Docker daemon, drives them with the real
//! `berth` CLI, and inspects the results with the `docker` CLI. Nothing here
//! is faked; the only simulation is the GPU inventory (no GPU on CI).
//!
//! Every cluster gets unique node and job names, so tests run in parallel on
//! one daemon. Processes are killed and containers removed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod dockerd;
pub use dockerd::{main_image_id, Dockerd};

/// The image the tests run; built by `deploy/images/build-workload-image.sh`.
pub const IMAGE: &str = "berth/workload:latest";

/// A binary of this workspace, built next to the test executable.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (tests/run.sh does)",
        path.display()
    );
    path
}

/// Polls `f` until it returns Some, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub const DEADLINE: Duration = Duration::from_secs(45);

/// A short random suffix for names shared with the Docker daemon.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{:x}{:x}", std::process::id(), nanos)
}

pub fn ensure_image() {
    let ok = Command::new("docker")
        .args(["image", "inspect", IMAGE])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/images/build-workload-image.sh");
        let st = Command::new(script)
            .arg(IMAGE)
            .status()
            .expect("run image build script");
        assert!(st.success(), "building {IMAGE} failed");
    }
}

pub struct Proc {
    child: Child,
}

impl Proc {
    fn spawn(cmd: &mut Command, log: &Path) -> Proc {
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
            .arg(&self.dir);
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
        ensure_image();
        let dir = tempfile::tempdir().unwrap();
        let addrs: Vec<String> = if n == 1 {
            vec!["127.0.0.1:0".into()]
        } else {
            // Free ports, released just before the controllers bind them.
            let held: Vec<_> = (0..n)
                .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
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
        let out = Command::new(bin("berth"))
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

    fn spawn_agent_full(&mut self, name: &str, gpus: &str, extra: &[&str], env: &[(&str, &str)]) {
        let foreign = self.foreign_file(name);
        if !foreign.exists() {
            std::fs::write(&foreign, "").unwrap();
        }
        let log = self.log_of(name);
        let p = Proc::spawn(
            Command::new(bin("berth-agent"))
                .args([
                    "--controllers",
                    &self.addr,
                    "--name",
                    name,
                    "--listen",
                    "127.0.0.1:0",
                ])
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

    /// Runs the `berth` CLI against this cluster.
    pub fn berth(&self, args: &[&str]) -> Output {
        Command::new(bin("berth"))
            .arg("--addr")
            .arg(&self.addr)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs `berth ARGS --output json` and parses stdout; panics on failure.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.berth(&[args, &["--output", "json"]].concat());
        assert!(
            out.status.success(),
            "berth {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json output")
    }

    /// `berth run -d ARGS`; returns the job id.
    pub fn run_detached(&self, args: &[&str]) -> String {
        let out = self.berth(&[&["run", "-d"], args].concat());
        assert!(
            out.status.success(),
            "berth run -d {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    pub fn job(&self, job: &str) -> Value {
        self.json(&["inspect", job])[0].clone()
    }

    pub fn wait_state(&self, job: &str, state: &str) -> Value {
        wait_for(&format!("job {job} {state}"), DEADLINE, || {
            let j = self.job(job);
            (j["state"] == state).then_some(j)
        })
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

/// Containers of a node, as Docker itself lists them.
pub fn docker_containers(node: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &format!("label=berth.node={node}"),
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

pub fn docker_inspect(container: &str) -> Value {
    docker_inspect_opt(container).unwrap_or_else(|| panic!("docker inspect {container}"))
}

/// `docker inspect`, or `None` when the container does not exist (any more).
pub fn docker_inspect_opt(container: &str) -> Option<Value> {
    let out = Command::new("docker")
        .args(["inspect", container])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| serde_json::from_slice::<Value>(&out.stdout).unwrap()[0].clone())
}

/// The value of `KEY` in a container's environment.
pub fn container_env(inspect: &Value, key: &str) -> Option<String> {
    inspect["Config"]["Env"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find_map(|e| e.strip_prefix(&format!("{key}=")).map(String::from))
}

/// Removes every container of `node` from the machine's daemon (what a
/// lost host's would be: gone with it).
pub fn remove_node_containers(node: &str) {
    let ids = docker_containers(node);
    if !ids.is_empty() {
        let _ = Command::new("docker")
            .args(["rm", "-f"])
            .args(&ids)
            .output();
    }
}

/// CLI flags followed by a job's command line.
pub fn args<'a>(head: &[&'a str], cmd: &'a [String]) -> Vec<&'a str> {
    head.iter()
        .copied()
        .chain(cmd.iter().map(String::as_str))
        .collect()
}

/// A directory shared with jobs: a job blocks until its gate file appears,
/// so tests decide when jobs finish without sleeping.
pub struct Gates {
    pub dir: tempfile::TempDir,
}

impl Gates {
    pub fn new() -> Gates {
        let dir = tempfile::tempdir().unwrap();
        // Containers run as root; the host dir must be readable inside.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        Gates { dir }
    }

    pub fn mount(&self) -> String {
        format!("{}:/gates", self.dir.path().display())
    }

    pub fn open(&self, name: &str) {
        std::fs::write(self.dir.path().join(name), "").unwrap();
    }

    /// A shell command that prints a line, waits for gate `name`, then exits with `code`.
    pub fn job_cmd(name: &str, code: i32) -> Vec<String> {
        vec![
            "sh".into(),
            "-c".into(),
            format!(
                "echo hello-{name}; trap 'exit 143' TERM; while [ ! -f /gates/{name} ]; do sleep 0.05; done; echo bye-{name} >&2; exit {code}"
            ),
        ]
    }
}

impl Default for Gates {
    fn default() -> Self {
        Gates::new()
    }
}
