//! A second (third...) Docker daemon on this machine, with its own image
//! store: its own data root, exec root, socket and pidfile, and the vfs
//! storage driver (works anywhere, no overlay mounts to share). Started per
//! test, stopped and removed on drop. Needs root, as dockerd does.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::{wait_for, DEADLINE};

pub struct Dockerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Dockerd {
    pub fn start() -> Dockerd {
        let mut cmd = Command::new("unshare");
        cmd.args(["--net", "dockerd"]);
        Dockerd::start_cmd(cmd)
    }

    /// A daemon inside network namespace `ns`: its host-network containers
    /// share the namespace's address, as on a separate machine. Holds a
    /// copy of the workload image.
    pub fn start_in(ns: &crate::Netns) -> Dockerd {
        // nsenter, not `ip netns exec`: that remounts /sys for the
        // namespace, hiding the cgroup mounts dockerd needs.
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", ns.name))
            .arg("dockerd");
        let d = Dockerd::start_cmd(cmd);
        d.load_from_main(crate::IMAGE);
        d
    }

    /// `docker save IMAGE` from the machine's daemon into this one.
    pub fn load_from_main(&self, image: &str) {
        let tar = self.dir.path().join("image.tar");
        let saved = Command::new("docker")
            .args(["save", "-o"])
            .arg(&tar)
            .arg(image)
            .status()
            .unwrap();
        assert!(saved.success(), "docker save {image}");
        let out = self.docker(&["load", "-i", tar.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_file(tar);
    }

    fn start_cmd(mut cmd: Command) -> Dockerd {
        // Short paths: containerd's socket lives under the exec root, and a
        // unix socket path must stay under 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("bd")
            .tempdir_in("/tmp")
            .unwrap();
        let p = |s: &str| dir.path().join(s);
        std::fs::write(p("daemon.json"), "{}").unwrap();
        let log = std::fs::File::create(p("dockerd.log")).unwrap();
        // Never the machine's network namespace: a dockerd started with
        // --bridge=none deletes the host's docker0 (the machine's daemon
        // then cannot start a container).
        let child = cmd
            .arg("--config-file")
            .arg(p("daemon.json"))
            .arg("--data-root")
            .arg(p("data"))
            .arg("--exec-root")
            .arg(p("x"))
            .arg("--pidfile")
            .arg(p("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", p("docker.sock").display()))
            .args(["--bridge=none", "--iptables=false", "--ip-masq=false"])
            .args(["--storage-driver=vfs"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("dockerd must be installed (the tests run it as root)");
        let d = Dockerd {
            dir,
            child: Some(child),
        };
        wait_for("a second dockerd", DEADLINE, || {
            d.docker(&["info"]).status.success().then_some(())
        });
        d
    }

    /// The daemon's socket path, for `berth-agent --docker`.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    /// Runs the docker CLI against this daemon.
    pub fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", self.socket().display()))
            .args(args)
            .output()
            .unwrap()
    }

    /// The id of `image` here, if this daemon has it.
    pub fn image_id(&self, image: &str) -> Option<String> {
        let out = self.docker(&["image", "inspect", "--format", "{{.Id}}", image]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM: dockerd stops its containerd and unmounts cleanly.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap()).keep();
            eprintln!("second dockerd's files kept in {}", kept.display());
        }
    }
}

/// The id of `image` on this machine's main daemon.
pub fn main_image_id(image: &str) -> Option<String> {
    let out = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", image])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
