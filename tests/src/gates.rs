//! Jobs that finish when a test says so: a gate file per job, no sleeps.

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
