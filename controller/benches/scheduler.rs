//! `cargo bench --bench scheduler`: 1,000 simulated hosts x 8 GPUs of mixed
//! models and 100,000 queued jobs of mixed shapes.
//!
//! 1. Committed: a real controller in this process (raft over sled in a temp
//!    dir) with every host registered and reporting, 100,000 jobs submitted
//!    through its API; then leader passes place what fits, and rounds of job
//!    exits free GPUs that the next pass fills. Prints placements committed
//!    per second (snapshot + schedule + raft commit + apply), the p99 time
//!    from a job becoming placeable (the exit that freed its GPUs committed)
//!    to its placement committed, and the process's RSS with that state.
//! 2. Pure (in a child process): the same cluster and queue as a snapshot; `schedule()` alone,
//!    first on the empty cluster, then over rounds of churn.
//!
//! Every host's agent watches its desired allocations, as real agents do
//! (the controller's own stream, consumed in process; BENCH_WATCH=0 for
//! none). The last line is a JSON object. Env: BENCH_HOSTS (1000),
//! BENCH_JOBS (100000), BENCH_ROUNDS (20).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_controller::scheduler::{
    self, GpuUse, GpuView, NodeView, QueueKeys, QueuedJob, Snapshot,
};
use berth_controller::state::{Command, JobState, NodeRecord};
use berth_controller::{Controller, ControllerConfig, Leader, LeaderConfig};
use berth_proto::v1::JobSpec;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[path = "scheduler_bench/workload.rs"]
mod workload;
use workload::{env_num, host, images, job_spec, report, G};

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

struct Committed {
    placements_per_s: f64,
    /// Churn passes only (each places what ~5% of jobs exiting freed).
    churn_per_s: f64,
    p99_place_ms: f64,
    p50_place_ms: f64,
    rss_mib: f64,
    submit_per_s: f64,
    first_pass_placed: usize,
}

/// The controller's identity (it serves nothing here, but owns one).
fn bench_tls() -> berth_proto::tls::Tls {
    let ca = berth_proto::tls::Ca::generate("bench").unwrap();
    ca.issue(
        &berth_proto::tls::Peer::Controller(1),
        &[],
        berth_proto::tls::NODE_CERT_LIFETIME,
    )
    .unwrap()
}

async fn committed(hosts: usize, jobs: usize, rounds: usize) -> Committed {
    let dir = tempfile::tempdir().unwrap();
    let ctl = Controller::open(ControllerConfig {
        id: 1,
        peers: [(1, "127.0.0.1:1".to_string())].into(),
        data_dir: dir.path().join("c1"),
        join: false,
        snapshot_every: 50_000,
        tls: bench_tls(),
        node_lost_after: berth_controller::core::DEFAULT_NODE_LOST_AFTER,
        event_history: berth_controller::core::history::HISTORY_EVENTS,
        hosts: Default::default(),
    })
    .unwrap();
    let leader = Leader::new(ctl.clone(), LeaderConfig::default());
    while !ctl.is_leader() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let nodes: Vec<NodeRecord> = (0..hosts).map(host).collect();
    for n in &nodes {
        ctl.register(n.clone()).await.unwrap();
    }
    let refresh = {
        let (ctl, nodes) = (ctl.clone(), nodes.clone());
        tokio::spawn(async move {
            loop {
                for (i, n) in nodes.iter().enumerate() {
                    ctl.report(report(i, n)).await.unwrap();
                }
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
        })
    };
    // Each host's agent follows its allocations, as a real one does.
    let watch = env_num("BENCH_WATCH", 1) != 0;
    let watchers: Vec<_> = nodes
        .iter()
        .filter(|_| watch)
        .map(|n| {
            let stream = berth_controller::api::control::allocations(ctl.clone(), n.name.clone());
            tokio::spawn(async move {
                futures::pin_mut!(stream);
                while futures::StreamExt::next(&mut stream).await.is_some() {}
            })
        })
        .collect();
    // Reports first, so submits see images and GPUs.
    while ctl.telemetry(&nodes[hosts - 1].name).is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Submits through the API (validation included), 64 at a time.
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(7);
    let specs: Vec<JobSpec> = (0..jobs).map(|_| job_spec(&mut rng)).collect();
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::with_capacity(jobs);
    for (i, spec) in specs.into_iter().enumerate() {
        let (ctl, permit) = (ctl.clone(), sem.clone().acquire_owned().await.unwrap());
        tasks.push(tokio::spawn(async move {
            ctl.submit(spec, "user", format!("j{i}"), format!("r{i}"), 0)
                .await
                .unwrap();
            drop(permit);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let submit_per_s = jobs as f64 / started.elapsed().as_secs_f64();
    eprintln!(
        "submitted {jobs} jobs in {:.1?} ({submit_per_s:.0}/s)",
        started.elapsed()
    );

    let mut placed = 0usize;
    let mut pass_time = Duration::ZERO;
    let t = Instant::now();
    let first_pass_placed = leader.pass().await.unwrap();
    pass_time += t.elapsed();
    placed += first_pass_placed;
    eprintln!(
        "first pass: {first_pass_placed} placed in {:.1?}",
        t.elapsed()
    );
    let mut latencies = Vec::new();
    let mut rng = StdRng::seed_from_u64(11);
    let (mut churn_placed, mut churn_time) = (0usize, Duration::ZERO);
    for round in 0..rounds {
        // Jobs that hold GPUs exit: 5% of them, committed one command each.
        let running: Vec<String> = ctl.read(|s| {
            s.jobs
                .values()
                .filter(|j| j.state == JobState::Placed && !j.gpus.is_empty())
                .map(|j| j.id.clone())
                .collect()
        });
        let exits: Vec<String> = running
            .iter()
            .filter(|_| rng.random_range(0..20) == 0)
            .cloned()
            .collect();
        let mut freed_at = Vec::with_capacity(exits.len());
        let mut handles = Vec::new();
        for id in exits {
            let ctl = ctl.clone();
            handles.push(tokio::spawn(async move {
                ctl.propose(Command::Exited {
                    job_id: id,
                    exit_code: 0,
                    at_ms: 0,
                })
                .await
                .unwrap();
                Instant::now()
            }));
        }
        for h in handles {
            freed_at.push(h.await.unwrap());
        }
        let t = Instant::now();
        let n = leader.pass().await.unwrap();
        let done = Instant::now();
        pass_time += t.elapsed();
        churn_time += t.elapsed();
        placed += n;
        churn_placed += n;
        // Each placement of this pass waited since the exit that freed room
        // for it: pair them oldest exit first.
        freed_at.sort();
        for f in freed_at.iter().take(n) {
            latencies.push((done - *f).as_secs_f64() * 1000.0);
        }
        if round % 5 == 0 {
            eprintln!(
                "round {round}: {} exits, {n} placed in {:.1?}",
                freed_at.len(),
                t.elapsed()
            );
        }
    }
    let rss = rss_mib();
    refresh.abort();
    for w in watchers {
        w.abort();
    }
    let p50 = percentile(&mut latencies.clone(), 0.50);
    Committed {
        placements_per_s: placed as f64 / pass_time.as_secs_f64(),
        churn_per_s: churn_placed as f64 / churn_time.as_secs_f64(),
        p99_place_ms: percentile(&mut latencies, 0.99),
        p50_place_ms: p50,
        rss_mib: rss,
        submit_per_s,
        first_pass_placed,
    }
}

/// The same cluster and queue as a pure snapshot.
fn snapshot(hosts: usize, jobs: usize) -> Snapshot {
    let nodes = (0..hosts)
        .map(|i| {
            let n = host(i);
            Arc::new(NodeView {
                name: n.name.clone(),
                labels: Arc::new(n.labels.clone()),
                gpus: n
                    .gpus
                    .iter()
                    .map(|g| GpuView {
                        index: g.index,
                        uuid: g.uuid.as_str().into(),
                        model: g.model.to_lowercase().into(),
                        memory_total: g.memory_total_bytes,
                        memory_free: g.memory_total_bytes,
                        group: g.group.as_str().into(),
                        use_: GpuUse::Free,
                    })
                    .collect(),
                images: Arc::new(
                    images(i)
                        .into_iter()
                        .flat_map(|im| im.tags.into_iter().chain([im.id]))
                        .collect(),
                ),
                disk_free: 1500 * G,
                ..NodeView::default()
            })
        })
        .collect();
    let mut rng = StdRng::seed_from_u64(7);
    let queue: Vec<Arc<QueuedJob>> = (0..jobs)
        .map(|i| {
            let s = job_spec(&mut rng);
            Arc::new(QueuedJob {
                id: format!("j{i}"),
                seq: i as u64 + 1,
                user: s.user,
                priority: s.priority,
                gpus: s.gpus,
                memory: s.gpu_memory_bytes,
                model: s.gpu_model.to_lowercase(),
                constraints: s
                    .constraints
                    .iter()
                    .filter_map(|c| scheduler::Constraint::parse(c))
                    .collect(),
                image: scheduler::normalize_image(&s.image),
                gang: (0..s.nodes).map(|r| format!("j{i}.{r}")).collect(),
                ..QueuedJob::default()
            })
        })
        .collect();
    Snapshot {
        nodes,
        queue_keys: Some(Arc::new(QueueKeys::build(&queue))),
        queue: Arc::new(queue),
        ..Snapshot::default()
    }
}

struct Pure {
    placements_per_s: f64,
    churn_per_s: f64,
    first_pass_ms: f64,
    first_pass_placed: usize,
}

fn pure(hosts: usize, jobs: usize, rounds: usize) -> Pure {
    let mut snap = snapshot(hosts, jobs);
    let node_of: HashMap<String, usize> = snap
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.clone(), i))
        .collect();
    // Placed task id → (host, GPU positions, slice bytes), to free later.
    let mut live: Vec<(usize, Vec<usize>, u64)> = Vec::new();
    let mut total = 0usize;
    let mut time = Duration::ZERO;
    let mut first = (0.0, 0);
    let (mut churn_placed, mut churn_time) = (0usize, Duration::ZERO);
    let mut rng = StdRng::seed_from_u64(3);
    for round in 0..=rounds {
        let t = Instant::now();
        let plan = scheduler::schedule(&snap);
        let took = t.elapsed();
        time += took;
        total += plan.placements.len();
        if round == 0 {
            first = (took.as_secs_f64() * 1000.0, plan.placements.len());
        } else {
            churn_placed += plan.placements.len();
            churn_time += took;
        }
        // Apply the plan to the snapshot (untimed), as the state machine would.
        let memory: HashMap<&str, u64> = snap
            .queue
            .iter()
            .flat_map(|j| {
                let ids: Vec<&str> = if j.gang.is_empty() {
                    vec![j.id.as_str()]
                } else {
                    j.gang.iter().map(String::as_str).collect()
                };
                ids.into_iter()
                    .map(move |id| (id, if j.gpus == 0 { j.memory } else { 0 }))
            })
            .collect();
        let mut placed_ids = std::collections::HashSet::new();
        for p in &plan.placements {
            let n = node_of[&p.node];
            let slice = memory.get(p.job_id.as_str()).copied().unwrap_or(0);
            let positions: Vec<usize> = p.gpus.iter().map(|g| g.index as usize).collect();
            for &g in &positions {
                let gpu = &mut Arc::make_mut(&mut snap.nodes[n]).gpus[g];
                gpu.use_ = match (slice, gpu.use_) {
                    (0, _) => GpuUse::Held,
                    (b, GpuUse::Shared(r)) => GpuUse::Shared(r + b),
                    (b, _) => GpuUse::Shared(b),
                };
            }
            live.push((n, positions, slice));
            placed_ids.insert(p.job_id.split('.').next().unwrap().to_string());
        }
        Arc::make_mut(&mut snap.queue).retain(|j| !placed_ids.contains(&j.id));
        // The controller keeps the packed keys in step as commands apply
        // (`sched_queue`, timed in the committed part).
        snap.queue_keys = Some(Arc::new(QueueKeys::build(&snap.queue)));
        // Churn: 5% of live jobs exit.
        let mut keep = Vec::with_capacity(live.len());
        for (n, gpus, slice) in live.drain(..) {
            if rng.random_range(0..20) != 0 {
                keep.push((n, gpus, slice));
                continue;
            }
            for g in gpus {
                let gpu = &mut Arc::make_mut(&mut snap.nodes[n]).gpus[g];
                gpu.use_ = match gpu.use_ {
                    GpuUse::Shared(r) if r > slice => GpuUse::Shared(r - slice),
                    _ => GpuUse::Free,
                };
            }
        }
        live = keep;
    }
    Pure {
        placements_per_s: total as f64 / time.as_secs_f64(),
        churn_per_s: churn_placed as f64 / churn_time.as_secs_f64(),
        first_pass_ms: first.0,
        first_pass_placed: first.1,
    }
}

fn main() {
    let hosts = env_num("BENCH_HOSTS", 1000);
    let jobs = env_num("BENCH_JOBS", 100_000);
    let rounds = env_num("BENCH_ROUNDS", 20);
    eprintln!("{hosts} hosts x 8 GPUs, {jobs} queued jobs, {rounds} churn rounds");
    if std::env::var("BENCH_PURE_ONLY").is_ok() {
        let p = pure(hosts, jobs, rounds);
        println!(
            "{} {} {} {}",
            p.placements_per_s, p.churn_per_s, p.first_pass_ms, p.first_pass_placed
        );
        return;
    }
    // The pure run in a child process of its own, so neither measurement
    // inherits the other's heap (RSS, allocator state).
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env("BENCH_PURE_ONLY", "1")
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run the pure scheduler part");
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<f64> = text
        .lines()
        .last()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    assert_eq!(f.len(), 4, "pure run printed {text:?}");
    let p = Pure {
        placements_per_s: f[0],
        churn_per_s: f[1],
        first_pass_ms: f[2],
        first_pass_placed: f[3] as usize,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = rt.block_on(committed(hosts, jobs, rounds));
    drop(rt);
    println!("pure scheduler: {:.0} placements/s ({} placed by the first pass over {jobs} jobs in {:.1} ms; churn passes alone {:.0}/s)", p.placements_per_s, p.first_pass_placed, p.first_pass_ms, p.churn_per_s);
    println!("committed: {:.0} placements/s (first pass {}; churn passes alone {:.0}/s), placeable -> placed p50 {:.1} ms p99 {:.1} ms", c.placements_per_s, c.first_pass_placed, c.churn_per_s, c.p50_place_ms, c.p99_place_ms);
    println!(
        "submits through the API: {:.0}/s; controller RSS with this state: {:.0} MiB",
        c.submit_per_s, c.rss_mib
    );
    println!(
        "{}",
        serde_json::json!({
            "hosts": hosts,
            "gpus": hosts * 8,
            "queued_jobs": jobs,
            "pure_placements_per_s": p.placements_per_s.round(),
            "pure_first_pass_ms": (p.first_pass_ms * 10.0).round() / 10.0,
            "pure_churn_placements_per_s": p.churn_per_s.round(),
            "committed_churn_placements_per_s": c.churn_per_s.round(),
            "committed_placements_per_s": c.placements_per_s.round(),
            "p50_place_ms": (c.p50_place_ms * 10.0).round() / 10.0,
            "p99_place_ms": (c.p99_place_ms * 10.0).round() / 10.0,
            "submits_per_s": c.submit_per_s.round(),
            "controller_rss_mib": c.rss_mib.round(),
        })
    );
}
