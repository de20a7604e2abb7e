//! Images received for jobs placed on this host (JOB_STATE_PULLING): one
//! transfer per image however many jobs wait for it, its progress kept for
//! the report, its outcome kept until the reconciler has acted on it (the
//! image is listed by the daemon, or the waiting jobs are reported failed).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_proto::internal::v1::control_plane_client::ControlPlaneClient;
use berth_proto::internal::v1::ImageSourcesRequest;
use berth_proto::v1::{ImagePull, TransferProgress};
use tokio::sync::{mpsc, Notify};

use crate::images;
use crate::runtime::Images;

/// Rounds over the holders before the jobs fail: a holder that restarts
/// (or a transfer cut short) gets another chance after a backoff (1, 2, 4,
/// 8 s: about 15 s in all).
const ROUNDS: u32 = 5;
const BACKOFF: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Pulls {
    inner: Mutex<HashMap<String, Pull>>,
    /// Notified when a transfer ends, so the reconciler acts at once.
    pub finished: Notify,
}

struct Pull {
    jobs: BTreeSet<String>,
    view: ImagePull,
    started: Instant,
    done: bool,
}

impl Pulls {
    /// Records that `job` waits for `image` (normalised). Returns true when
    /// a transfer must start: none is running or done for it, or the last
    /// one failed before this job asked.
    pub fn join(&self, image: &str, job: &str) -> bool {
        let mut inner = self.inner.lock().unwrap();
        match inner.get_mut(image) {
            Some(p) if p.view.error.is_empty() || p.jobs.contains(job) => {
                p.jobs.insert(job.to_string());
                p.view.job_ids = p.jobs.iter().cloned().collect();
                false
            }
            _ => {
                inner.insert(
                    image.to_string(),
                    Pull {
                        jobs: [job.to_string()].into(),
                        view: ImagePull {
                            image: image.to_string(),
                            job_ids: vec![job.to_string()],
                            ..ImagePull::default()
                        },
                        started: Instant::now(),
                        done: false,
                    },
                );
                true
            }
        }
    }

    fn progress(&self, image: &str, p: &TransferProgress) {
        if let Some(pull) = self.inner.lock().unwrap().get_mut(image) {
            let v = &mut pull.view;
            v.done_bytes = p.bytes_done;
            v.total_bytes = p.bytes_total.max(p.bytes_done);
            if !p.source.is_empty() {
                v.source = p.source.clone();
            }
            if !p.message.is_empty() {
                v.message = p.message.clone();
            }
            let secs = pull.started.elapsed().as_secs_f64().max(0.001);
            v.bytes_per_second = (p.bytes_done as f64 / secs) as u64;
        }
    }

    fn finish(&self, image: &str, result: Result<(), String>) {
        if let Some(pull) = self.inner.lock().unwrap().get_mut(image) {
            pull.done = true;
            match result {
                Ok(()) => pull.view.done_bytes = pull.view.total_bytes,
                Err(e) => pull.view.error = e,
            }
        }
        self.finished.notify_one();
    }

    /// Forgets transfers the reconciler no longer needs: loaded images the
    /// daemon now lists, and any whose jobs are all gone. Returns the jobs
    /// of failed transfers with the reason, to be reported as failures.
    pub fn settle(
        &self,
        present: impl Fn(&str) -> bool,
        live: impl Fn(&str) -> bool,
    ) -> Vec<(String, String)> {
        let mut inner = self.inner.lock().unwrap();
        inner.retain(|image, p| {
            p.jobs.retain(|j| live(j));
            p.view.job_ids = p.jobs.iter().cloned().collect();
            let loaded = p.done && p.view.error.is_empty() && present(image);
            !p.jobs.is_empty() && !loaded
        });
        inner
            .values()
            .filter(|p| !p.view.error.is_empty())
            .flat_map(|p| {
                let why = format!(
                    "image {} could not be received: {}",
                    p.view.image, p.view.error
                );
                p.jobs.iter().map(move |j| (j.clone(), why.clone()))
            })
            .collect()
    }

    /// What the node report carries.
    pub fn report(&self) -> Vec<ImagePull> {
        let mut v: Vec<ImagePull> = self
            .inner
            .lock()
            .unwrap()
            .values()
            .map(|p| p.view.clone())
            .collect();
        v.sort_by(|a, b| a.image.cmp(&b.image));
        v
    }
}

/// What a transfer for jobs needs besides the image's name.
#[derive(Clone)]
pub struct PullContext {
    pub node: String,
    pub runtime: Arc<dyn Images>,
    pub images: crate::images::ImageOptions,
    pub tls: berth_proto::tls::Tls,
    pub pulls: Arc<Pulls>,
    pub control: ControlPlaneClient<berth_proto::connect::Timed>,
}

/// Receives `image` for the jobs waiting on it: asks the controller for the
/// best holders, checks disk, fetches (next holder on failure), and tries
/// again after a backoff before giving up.
pub async fn run(cx: PullContext, image: String) {
    let mut last = String::new();
    for round in 0..ROUNDS {
        if round > 0 {
            tokio::time::sleep(BACKOFF * 2u32.pow(round - 1)).await;
        }
        match attempt(&cx, &image).await {
            Ok(id) => {
                tracing::info!(%image, id = %&id[..19.min(id.len())], "image received for waiting jobs");
                cx.pulls.finish(&image, Ok(()));
                return;
            }
            Err(Fatal(e)) => {
                last = e;
                break;
            }
            Err(Retry(e)) => {
                tracing::warn!(%image, round, error = %e, "image pull failed; will retry");
                cx.pulls.progress(
                    &image,
                    &TransferProgress {
                        message: format!("{e}; retrying"),
                        ..TransferProgress::default()
                    },
                );
                last = e;
            }
        }
    }
    tracing::warn!(%image, error = %last, "image pull gave up");
    cx.pulls.finish(&image, Err(last));
}

enum Outcome {
    Retry(String),
    Fatal(String),
}
use Outcome::{Fatal, Retry};

async fn attempt(cx: &PullContext, image: &str) -> Result<String, Outcome> {
    let found = cx
        .control
        .clone()
        .image_sources(ImageSourcesRequest {
            node: cx.node.clone(),
            image: image.to_string(),
        })
        .await
        .map_err(|e| {
            Retry(format!(
                "asking the controller for holders: {}",
                e.message()
            ))
        })?
        .into_inner();
    if found.sources.is_empty() {
        return Err(Retry(format!("no ready host holds {image}")));
    }
    let disk = cx.runtime.disk().await.map_err(|e| Retry(e.to_string()))?;
    images::disk_check(
        disk.free_bytes,
        found.image_size,
        image,
        &disk.docker_root_dir,
    )
    .map_err(|e| Fatal(e.to_string()))?;
    let (tx, mut rx) = mpsc::channel::<TransferProgress>(16);
    let (pulls, name) = (cx.pulls.clone(), image.to_string());
    let watcher = tokio::spawn(async move {
        while let Some(p) = rx.recv().await {
            pulls.progress(&name, &p);
        }
    });
    let r = images::fetch(
        cx.runtime.clone(),
        &cx.tls,
        cx.images,
        image,
        &found.sources,
        &tx,
        None,
    )
    .await;
    drop(tx);
    let _ = watcher.await;
    r.map_err(|e| Retry(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_transfer_per_image_and_failures_reach_every_waiting_job() {
        let p = Pulls::default();
        assert!(p.join("img:1", "a"), "the first job starts a transfer");
        assert!(!p.join("img:1", "b"), "the second shares it");
        assert!(p.join("img:2", "c"));
        assert_eq!(p.report()[0].job_ids, vec!["a", "b"]);

        p.finish("img:2", Ok(()));
        // Done but not yet listed by the daemon: kept (and reported), so
        // the job is not taken for one without a container.
        assert!(p.settle(|_| false, |_| true).is_empty());
        assert!(!p.join("img:2", "c"));
        p.settle(|i| i == "img:2", |_| true);
        assert_eq!(p.report().len(), 1);

        p.finish("img:1", Err("could not load img:1 from any holder".into()));
        let mut failed = p.settle(|_| false, |_| true);
        failed.sort();
        assert_eq!(failed.len(), 2);
        assert!(failed[0].0 == "a" && failed[0].1.contains("could not be received"));
        // A job arriving after the failure starts a fresh transfer.
        assert!(p.join("img:1", "d"));
        // Jobs that left (failed, cancelled) take their transfer with them.
        assert!(p.settle(|_| false, |j| j != "d").is_empty());
        assert!(p.report().is_empty());
    }
}
