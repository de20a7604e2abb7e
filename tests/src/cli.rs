//! The `berth` CLI against a `Cluster`, as its bootstrap admin or another
//! user, and reading its answers.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::{bin, wait_for, Cluster, DEADLINE};

impl Cluster {
    /// The CLI config file (the CA and the admin token).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("berth.toml")
    }

    /// The `berth` CLI with this cluster's config (its CA, the admin token).
    pub fn cli(&self) -> Command {
        let mut cmd = Command::new(bin("berth"));
        cmd.env("BERTH_CONFIG", self.config_path())
            .env_remove("BERTH_TOKEN")
            .env_remove("BERTH_CA");
        cmd
    }

    /// How a Rust client reaches the controllers as the admin.
    pub fn dial(&self) -> berth_proto::connect::Dial {
        self.dial_with(Some(&self.admin_token))
    }

    /// As `dial`, with another token (or none).
    pub fn dial_with(&self, token: Option<&str>) -> berth_proto::connect::Dial {
        let ca = std::fs::read_to_string(self.tls.join("ca.pem")).unwrap();
        berth_proto::connect::Dial {
            tls: berth_proto::tls::Tls::ca_only(ca),
            bearer: berth_proto::connect::Bearer::new(token).unwrap(),
        }
    }

    /// Mints a token for `user` with `role` (as the admin); returns the secret.
    pub fn token(&self, user: &str, role: &str) -> String {
        let out = self.berth(&["token", "create", user, "--role", role]);
        assert!(
            out.status.success(),
            "token create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Runs the `berth` CLI with the CA but no token at all.
    pub fn berth_anonymous(&self, args: &[&str]) -> Output {
        let config = self.dir.path().join("anonymous.toml");
        std::fs::write(
            &config,
            format!("ca = {:?}\n", self.tls.join("ca.pem").display().to_string()),
        )
        .unwrap();
        self.run_cli(
            Command::new(bin("berth"))
                .env("BERTH_CONFIG", &config)
                .env_remove("BERTH_TOKEN"),
            args,
        )
    }

    /// Runs the `berth` CLI with `token` instead of the admin's.
    pub fn berth_as(&self, token: &str, args: &[&str]) -> Output {
        self.run_cli(self.cli().env("BERTH_TOKEN", token), args)
    }

    /// Runs the `berth` CLI against this cluster.
    pub fn berth(&self, args: &[&str]) -> Output {
        self.run_cli(&mut self.cli(), args)
    }

    /// `cmd ARGS` against this cluster's controllers, with no stdin.
    fn run_cli(&self, cmd: &mut Command, args: &[&str]) -> Output {
        cmd.arg("--addr")
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
        Self::detached(self.berth(&[&["run", "-d"], args].concat()), args)
    }

    /// `berth run -d ARGS` as the holder of `token`; returns the job id.
    pub fn run_detached_as(&self, token: &str, args: &[&str]) -> String {
        Self::detached(self.berth_as(token, &[&["run", "-d"], args].concat()), args)
    }

    fn detached(out: Output, args: &[&str]) -> String {
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
