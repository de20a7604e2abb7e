//! `berth top` in a real terminal (tmux): the hosts, GPUs, a running job's
//! holder and a foreign process on screen, a new job appearing as the event
//! stream says it moved, the user filter, `q`; and plain lines off a
//! terminal.

use std::process::Command;

use berth_tests::*;

/// A tmux server of the test's own (its own socket), killed on drop.
struct Tmux(String);

impl Tmux {
    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.0]);
        c
    }

    fn screen(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "top"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        assert!(self
            .cmd()
            .args(["send-keys", "-t", "top"])
            .args(keys)
            .status()
            .unwrap()
            .success());
    }

    fn wait_screen(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        let found = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_for(what, DEADLINE, || {
                last = self.screen();
                ok(&last).then(|| last.clone())
            })
        }));
        found.unwrap_or_else(|_| panic!("{what}: the screen was\n{last}"))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

#[test]
fn berth_top_shows_who_holds_each_gpu_and_follows_the_cluster() {
    ensure_image();
    let mut c = Cluster::start();
    let node = c.add_agent(3);
    // Someone's notebook on GPU 1, outside Berth.
    std::fs::write(c.foreign_file(&node), "1 4242 notebook 2g\n").unwrap();
    let alice = c.token("alice", "user");
    let bob = c.token("bob", "user");
    let job = c.run_detached_as(
        &alice,
        &["--gpus", "1", "--name", "train-a", IMAGE, "sleep", "300"],
    );
    c.wait_state(&job, "running");

    let tmux = Tmux(unique("top"));
    let shell = format!(
        "BERTH_CONFIG={} {} --addr {} top --delay 1s",
        c.config_path().display(),
        bin("berth").display(),
        c.addr
    );
    let started = tmux
        .cmd()
        .args([
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            "160",
            "-y",
            "30",
            &shell,
        ])
        .status()
        .unwrap();
    assert!(started.success());
    let screen = tmux.wait_screen("hosts, GPUs, the holder and the notebook", |s| {
        s.contains(&node)
            && s.contains("train-a")
            && s.contains("alice")
            && s.contains("foreign: 4242 notebook")
    });
    assert!(
        screen.contains("berth top") && screen.contains("GPUs"),
        "{screen}"
    );
    assert!(
        screen.contains("USER") && screen.contains("Queue"),
        "{screen}"
    );

    // A job placed after the screen was drawn shows up (events, then a refresh).
    c.run_detached_as(
        &bob,
        &["--gpus", "1", "--name", "bobs-job", IMAGE, "sleep", "300"],
    );
    tmux.wait_screen("bob's new job on screen", |s| {
        s.contains("bobs-job") && s.contains("bob")
    });

    // Filter by user: only bob's GPU stays.
    tmux.keys(&["u"]);
    tmux.keys(&["bob", "Enter"]);
    let filtered = tmux.wait_screen("the user filter", |s| s.contains("filter: user=bob"));
    let gpus_part = filtered.split("Users").next().unwrap();
    assert!(
        !gpus_part.contains("train-a") && gpus_part.contains("bobs-job"),
        "{filtered}"
    );
    tmux.keys(&["q"]);
    wait_for("top to quit on q", DEADLINE, || {
        let out = tmux
            .cmd()
            .args(["has-session", "-t", "top"])
            .output()
            .unwrap();
        (!out.status.success()).then_some(())
    });

    // Off a terminal: plain lines.
    let out = c.berth(&["top", "-n", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("{node} gpu0 up")), "{text}");
    assert!(text.contains("foreign: 4242 notebook"), "{text}");
    assert!(text.contains("user alice gpus 1.00"), "{text}");
    c.berth(&["stop", &job, "bobs-job"]);
}
