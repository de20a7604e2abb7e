//! The series `metrics::Cluster` reads off the state and the leader's
//! telemetry at scrape time: jobs by state, the queue by user and GPU
//! model, nodes, and each GPU with the job and user holding it (what
//! DCGM's exporter gives per GPU, plus who holds it).
//! Also the gauge-writing helpers `metrics` uses for raft.
//!
//! GPU series come from the leader only: telemetry lives in the leader's
//! memory (see `telemetry`). Scrape every controller; the GPU series
//! follow leadership.

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;
use rustc_hash::FxHashMap;

use super::Controller;
use crate::state::JobState;

pub(super) fn encode(ctl: &Controller, enc: &mut DescriptorEncoder) -> std::fmt::Result {
    // One pass under the lock, formatting after it: a scrape never holds
    // the state longer than a walk over it.
    let rows = {
        let inner = ctl.shared.lock();
        let s = &inner.state;
        let states = tally(s.jobs.values().map(|j| j.state));
        // One walk over the queue for both tallies.
        let mut queue = rustc_hash::FxHashMap::default();
        let mut queued_gpus = rustc_hash::FxHashMap::default();
        for j in s.queue.iter().filter_map(|id| s.jobs.get(id)) {
            let model = if j.spec.gpu_model.is_empty() {
                "any".to_string()
            } else {
                j.spec.gpu_model.clone()
            };
            *queue.entry((j.spec.user.clone(), model)).or_insert(0u64) += 1;
            *queued_gpus.entry(j.spec.user.clone()).or_insert(0u64) +=
                u64::from(j.spec.gpus.max(1)) * u64::from(j.spec.nodes.max(1));
        }
        let mut nodes = Vec::new();
        let mut gpus = Vec::new();
        let mut disks = Vec::new();
        for n in s.nodes.values() {
            let t = inner.telemetry.get(&n.name);
            let up = ctl.reported_recently(t);
            let status = match (up, s.cordons.contains_key(&n.name)) {
                (false, _) => "down",
                (true, true) => "cordoned",
                (true, false) => "ready",
            };
            nodes.push((n.name.clone(), status, n.gpu_backend.word()));
            let Some(t) = t else { continue };
            if let Some(d) = &t.report.disk {
                disks.push((n.name.clone(), d.total_bytes, d.free_bytes));
            }
            for g in &t.report.gpus {
                let (job_id, job_name, user) = holders(s, &g.uuid);
                let labels: Labels = vec![
                    ("node", n.name.clone()),
                    ("gpu", g.index.to_string()),
                    ("uuid", g.uuid.clone()),
                    ("model", g.model.clone()),
                    ("job_id", job_id),
                    ("job_name", job_name),
                    ("user", user),
                ];
                gpus.push((labels, g.clone()));
            }
        }
        Rows {
            revision: s.applied_index,
            states,
            queue,
            queued_gpus,
            nodes,
            gpus,
            disks,
        }
    };
    rows.encode(enc)
}

/// Who holds GPU `uuid`: (job ids, job names, users), each empty when it
/// is free and comma-joined for a GPU shared by slices.
///
/// `job_id`, not `job`: Prometheus gives every series a `job` label of its
/// own (the scrape job) and would rename ours `exported_job`.
fn holders(s: &crate::state::State, uuid: &str) -> (String, String, String) {
    let jobs: Vec<&crate::state::JobRecord> = s.gpu_jobs(uuid).collect();
    let join = |f: &dyn Fn(&crate::state::JobRecord) -> &str| {
        let mut v: Vec<&str> = jobs.iter().map(|j| f(j)).collect();
        v.dedup();
        v.join(",")
    };
    let mut users: Vec<&str> = jobs.iter().map(|j| j.spec.user.as_str()).collect();
    users.sort_unstable();
    users.dedup();
    (join(&|j| &j.id), join(&|j| &j.name), users.join(","))
}

struct Rows {
    revision: u64,
    states: rustc_hash::FxHashMap<JobState, u64>,
    queue: rustc_hash::FxHashMap<(String, String), u64>,
    queued_gpus: rustc_hash::FxHashMap<String, u64>,
    nodes: Vec<(String, &'static str, &'static str)>,
    gpus: Vec<(Labels, berth_proto::v1::Gpu)>,
    disks: Vec<(String, u64, u64)>,
}

impl Rows {
    fn encode(mut self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        self.encode_gpus(enc)?;
        gauge(
            enc,
            "berth_state_revision",
            "The log index the state was read at (what list responses carry)",
            None,
            vec![(Labels::new(), self.revision as f64)],
        )?;
        let jobs = STATES
            .iter()
            .map(|st| {
                let n = self.states.get(st).copied().unwrap_or(0);
                (vec![("state", st.word().to_string())], n as f64)
            })
            .collect();
        gauge(
            enc,
            "berth_jobs",
            "Jobs the state holds, by state",
            None,
            jobs,
        )?;
        let queue = self
            .queue
            .drain()
            .map(|((user, model), n)| (vec![("user", user), ("gpu_model", model)], n as f64))
            .collect();
        gauge(
            enc,
            "berth_queue_jobs",
            "Queued jobs by user and by the GPU model they ask for (any: none named)",
            None,
            queue,
        )?;
        let gpus = self
            .queued_gpus
            .drain()
            .map(|(user, n)| (vec![("user", user)], n as f64))
            .collect();
        gauge(
            enc,
            "berth_queue_gpus",
            "GPUs the queued jobs of each user ask for (a slice or CPU job counts one)",
            None,
            gpus,
        )?;
        let status = tally(self.nodes.iter().map(|n| n.1));
        let nodes = ["ready", "cordoned", "down"]
            .iter()
            .map(|st| {
                (
                    vec![("status", st.to_string())],
                    status.get(st).copied().unwrap_or(0) as f64,
                )
            })
            .collect();
        gauge(
            enc,
            "berth_nodes",
            "Registered hosts by status",
            None,
            nodes,
        )?;
        let up = self
            .nodes
            .iter()
            .map(|(n, st, backend)| {
                (
                    vec![("node", n.clone()), ("gpu_backend", backend.to_string())],
                    f64::from(u8::from(*st != "down")),
                )
            })
            .collect();
        gauge(
            enc,
            "berth_node_up",
            "1 while the host's agent reports",
            None,
            up,
        )?;
        let free = self
            .disks
            .iter()
            .map(|(n, _, f)| (vec![("node", n.clone())], *f as f64))
            .collect();
        gauge(
            enc,
            "berth_node_docker_disk_free",
            "Free space under the host's Docker root dir",
            Some(&Unit::Bytes),
            free,
        )?;
        let total = self
            .disks
            .iter()
            .map(|(n, t, _)| (vec![("node", n.clone())], *t as f64))
            .collect();
        gauge(
            enc,
            "berth_node_docker_disk_size",
            "Size of the file system under the host's Docker root dir",
            Some(&Unit::Bytes),
            total,
        )
    }

    fn encode_gpus(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        type Pick = fn(&berth_proto::v1::Gpu) -> f64;
        let families: [(&str, &str, Option<Unit>, Pick); 6] = [
            (
                "berth_gpu_utilization",
                "Fraction of the last sample period a kernel ran (NVML)",
                Some(Unit::Other("ratio".into())),
                |g| f64::from(g.utilization_percent) / 100.0,
            ),
            (
                "berth_gpu_memory_used",
                "GPU memory in use",
                Some(Unit::Bytes),
                |g| g.memory_used_bytes as f64,
            ),
            (
                "berth_gpu_memory_total",
                "GPU memory in all",
                Some(Unit::Bytes),
                |g| g.memory_total_bytes as f64,
            ),
            (
                "berth_gpu_temperature",
                "GPU core temperature (0: unknown)",
                Some(Unit::Celsius),
                |g| f64::from(g.temperature_celsius),
            ),
            (
                "berth_gpu_power",
                "GPU power draw (0: unknown)",
                Some(Unit::Other("watts".into())),
                |g| f64::from(g.power_milliwatts) / 1000.0,
            ),
            (
                "berth_gpu_foreign_processes",
                "Processes on the GPU that Berth did not start (such a GPU is not given to jobs)",
                None,
                |g| g.foreign_processes.len() as f64,
            ),
        ];
        for (name, help, unit, pick) in families {
            let rows = self
                .gpus
                .iter()
                .map(|(l, g)| (l.clone(), pick(g)))
                .collect();
            gauge(enc, name, help, unit.as_ref(), rows)?;
        }
        Ok(())
    }
}

pub type Labels = Vec<(&'static str, String)>;

/// Writes one gauge family.
pub(super) fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    rows: Vec<(Labels, f64)>,
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, v) in rows {
        m.encode_family(&labels)?.encode_gauge(&v)?;
    }
    Ok(())
}

/// Counts by a key, for gauges of "how many X per Y".
fn tally<K: std::hash::Hash + Eq>(keys: impl Iterator<Item = K>) -> FxHashMap<K, u64> {
    let mut out = FxHashMap::default();
    for k in keys {
        *out.entry(k).or_insert(0) += 1;
    }
    out
}

/// Every job state, so a state with no jobs still reads 0 (a series that
/// disappears breaks `rate()` and alerts alike).
const STATES: [JobState; 8] = [
    JobState::Queued,
    JobState::Placed,
    JobState::Pulling,
    JobState::Running,
    JobState::Stopping,
    JobState::Exited,
    JobState::Failed,
    JobState::Cancelled,
];
