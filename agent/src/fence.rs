//! Fencing: an agent cut off from the controllers stops, by itself, the
//! containers of jobs the controllers will run elsewhere — before they do.
//!
//! The controllers declare a silent host's jobs lost after T
//! (`--node-lost-after`, learnt at registration). The agent's lease is T/2,
//! counted from when it *sent* the last report a leader answered (so it
//! starts no later than the controller's own clock for that report). When
//! it runs out, every running Berth container here is stopped with a grace
//! of at most T/4, except those of `--on-host-lost wait` jobs (labelled).
//! The stops are over by 3T/4, a quarter of T before any copy can be
//! placed elsewhere. The fenced jobs are reported failed ("fenced") when a
//! controller answers again. The timeline: docs/operations.md.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the agent knows of its lease.
/// What an agent restarted during a partition must still know: the
/// timeout, and which cluster's containers are its own.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct Remembered {
    node_lost_after_ms: u64,
    cluster_id: String,
}

#[derive(Debug)]
pub struct Lease {
    /// The controllers' --node-lost-after and the cluster id; unknown
    /// until learnt at registration (or read from `file`, for an agent
    /// restarted during a partition).
    known: Mutex<Option<Remembered>>,
    /// When the last report a leader answered was sent.
    answered: Mutex<Instant>,
    /// Fenced jobs and why, until a controller is told.
    fenced: Mutex<HashMap<String, String>>,
    file: Option<PathBuf>,
}

impl Lease {
    /// A lease remembered in `dir` (the agent's TLS dir) across restarts.
    pub fn new(dir: Option<&Path>) -> Lease {
        let file = dir.map(|d| d.join("lease.json"));
        let known = file
            .as_ref()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|b| serde_json::from_slice(&b).ok());
        Lease {
            known: Mutex::new(known),
            answered: Mutex::new(Instant::now()),
            fenced: Mutex::default(),
            file,
        }
    }

    /// The controllers' timeout and the cluster's id, told at registration.
    pub fn learn(&self, lost_after: Duration, cluster_id: &str) {
        if lost_after.is_zero() || cluster_id.is_empty() {
            return; // an older controller that does not say
        }
        let now = Remembered {
            node_lost_after_ms: lost_after.as_millis() as u64,
            cluster_id: cluster_id.to_string(),
        };
        let mut known = self.known.lock().unwrap();
        if known.as_ref() != Some(&now) {
            if let Some(f) = &self.file {
                let tmp = f.with_extension("tmp");
                let written = serde_json::to_vec(&now)
                    .map_err(std::io::Error::other)
                    .and_then(|b| std::fs::write(&tmp, b))
                    .and_then(|()| std::fs::rename(&tmp, f));
                if let Err(e) = written {
                    tracing::warn!(error = %e, file = %f.display(), "could not remember the lease");
                }
            }
            *known = Some(now);
        }
    }

    /// The cluster whose containers are this agent's, as last learnt.
    pub fn cluster(&self) -> Option<String> {
        self.known
            .lock()
            .unwrap()
            .as_ref()
            .map(|k| k.cluster_id.clone())
    }

    /// A leader answered the report sent at `sent`.
    pub fn renewed(&self, sent: Instant) {
        let mut answered = self.answered.lock().unwrap();
        *answered = (*answered).max(sent);
    }

    /// How long after the last answered report the agent fences, and the
    /// longest grace its stops may take. `None`: no lease known.
    pub fn timing(&self) -> Option<(Duration, Duration)> {
        self.known.lock().unwrap().as_ref().map(|k| {
            let t = Duration::from_millis(k.node_lost_after_ms);
            (t / 2, t / 4)
        })
    }

    /// Whether the lease ran out: the controllers may consider this host lost.
    pub fn expired(&self) -> bool {
        self.timing()
            .is_some_and(|(lease, _)| self.answered.lock().unwrap().elapsed() >= lease)
    }

    pub fn silent_for(&self) -> Duration {
        self.answered.lock().unwrap().elapsed()
    }

    pub fn fenced(&self, job: &str, why: String) {
        self.fenced.lock().unwrap().insert(job.to_string(), why);
    }

    pub fn is_fenced(&self, job: &str) -> bool {
        self.fenced.lock().unwrap().contains_key(job)
    }

    /// The fenced jobs still placed here (`live`), to report as failed;
    /// the others are forgotten (their controller has moved on).
    pub fn fenced_jobs(&self, live: impl Fn(&str) -> bool) -> HashMap<String, String> {
        let mut fenced = self.fenced.lock().unwrap();
        fenced.retain(|job, _| live(job));
        fenced.clone()
    }
}

/// How often the fence looks at the lease.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);

impl crate::Agent {
    /// Runs forever: stops what must not outlive the lease.
    pub async fn fence_forever(self: std::sync::Arc<Self>) {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        loop {
            tick.tick().await;
            let expired = self.lease.expired();
            crate::metrics::metrics().fenced.set(i64::from(expired));
            if expired {
                self.fence_once().await;
            }
        }
    }

    async fn fence_once(&self) {
        let Some((_, grace)) = self.lease.timing() else {
            return;
        };
        // Registered in this run, or remembered from the last one (an
        // agent restarted while cut off still fences).
        let cluster = Some(self.cluster_id.lock().unwrap().clone())
            .filter(|c| !c.is_empty())
            .or_else(|| self.lease.cluster());
        let Some(cluster) = cluster else {
            return; // never registered: nothing here is a cluster's yet
        };
        let containers = match self.runtime.list(&cluster, &self.cfg.node).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "fence: cannot list containers");
                return;
            }
        };
        let silent = self.lease.silent_for();
        for c in containers
            .into_iter()
            .filter(|c| c.is_running() && !c.keep_when_lost && !self.lease.is_fenced(&c.job_id))
        {
            tracing::warn!(job = %c.job_id, silent = ?silent, "no controller quorum for the lease: stopping the job (fencing)");
            self.lease.fenced(
                &c.job_id,
                format!(
                    "fenced: its host lost the controllers for {} s, so its agent stopped it before it could run elsewhere",
                    silent.as_secs()
                ),
            );
            self.stop_in_background(
                c.job_id.clone(),
                c.id.clone(),
                grace.min(self.cfg.stop_grace),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_is_half_the_timeout_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let lease = Lease::new(Some(dir.path()));
        assert_eq!(lease.timing(), None, "unknown until registration");
        assert!(!lease.expired(), "no lease known: never fences");
        lease.learn(Duration::from_secs(8), "c1");
        assert_eq!(
            lease.timing(),
            Some((Duration::from_secs(4), Duration::from_secs(2)))
        );
        lease.renewed(Instant::now());
        assert!(!lease.expired());
        // An agent restarted during a partition still knows it.
        let again = Lease::new(Some(dir.path()));
        assert_eq!(again.timing(), lease.timing());
        assert_eq!(
            again.cluster().as_deref(),
            Some("c1"),
            "and whose containers to stop"
        );
        // An older controller that does not say changes nothing.
        again.learn(Duration::ZERO, "c1");
        assert_eq!(again.timing(), lease.timing());
    }

    #[test]
    fn a_renewal_never_moves_the_lease_back() {
        let lease = Lease::new(None);
        lease.learn(Duration::from_secs(2), "c1");
        let earlier = Instant::now();
        lease.renewed(Instant::now() + Duration::from_secs(60));
        lease.renewed(earlier);
        assert!(!lease.expired());
    }
}
