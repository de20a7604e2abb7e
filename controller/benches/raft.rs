//! `cargo bench --bench raft`: a 3-controller cluster of real `berth-controller`
//! processes on loopback, fed by many concurrent gRPC clients.
//!
//! Prints committed submissions per second, p50/p99 commit latency (client
//! send → acknowledged, i.e. durable on a majority and applied on the leader),
//! and failover time (leader killed with SIGKILL → first submit acknowledged
//! by the new leader). The last line is a JSON object with those figures.
//!
//! Every link is mutual TLS (there is no other mode): the controllers share
//! a CA made here, the clients submit with the bootstrap admin token.
//!
//! Env: BENCH_SECONDS (default 10), BENCH_CLIENTS (default 64).

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_controller::api::auth::bootstrap;
use berth_proto::connect::Dial;
use berth_proto::internal::v1::control_plane_client::ControlPlaneClient;
use berth_proto::internal::v1::{GpuBackend, NodeReport, RegisterRequest, ReportRequest};
use berth_proto::tls::{Peer, Tls};
use berth_proto::v1::controller_service_client::ControllerServiceClient;
use berth_proto::v1::job_service_client::JobServiceClient;
use berth_proto::v1::*;
use tonic::transport::Channel;

struct Procs(BTreeMap<u64, Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in self.0.values_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn env_num(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A CA for the cluster; dials as the admin (users) and as the bench's
/// fake node (the control plane).
fn credentials(dir: &std::path::Path) -> (Dial, Dial) {
    let tls_dir = dir.join("tls");
    let token = bootstrap::init(&tls_dir, "bench").unwrap();
    bootstrap::issue(
        &tls_dir,
        &Peer::Node("bench-node".into()),
        &[],
        berth_proto::tls::NODE_CERT_LIFETIME,
        &dir.join("node"),
    )
    .unwrap();
    let ca = std::fs::read_to_string(tls_dir.join("ca.pem")).unwrap();
    let user = Dial {
        tls: Tls::ca_only(ca),
        bearer: berth_proto::connect::Bearer::new(Some(&token)).unwrap(),
    };
    let node = Dial {
        tls: Tls::load(&dir.join("node")).unwrap(),
        bearer: Default::default(),
    };
    (user, node)
}

fn spawn_cluster(dir: &std::path::Path) -> (Procs, Vec<String>) {
    let held: Vec<_> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let addrs: Vec<String> = held
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    drop(held);
    let peers = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut procs = BTreeMap::new();
    for (i, addr) in addrs.iter().enumerate() {
        let id = i as u64 + 1;
        let data = dir.join(format!("c{id}"));
        let log = std::fs::File::create(dir.join(format!("c{id}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_berth-controller"))
            .args(["--id", &id.to_string(), "--peers", &peers, "--listen", addr])
            .arg("--data-dir")
            .arg(&data)
            .arg("--tls-dir")
            .arg(dir.join("tls"))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn berth-controller");
        procs.insert(id, child);
    }
    (Procs(procs), addrs)
}

async fn leader(dial: &Dial, addrs: &[String]) -> (Channel, u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((ch, _)) =
            berth_proto::connect::leader(dial, addrs, Duration::from_secs(10)).await
        {
            if let Ok(m) =
                ControllerServiceClient::with_interceptor(ch.clone(), dial.bearer.clone())
                    .list_members(ListMembersRequest {})
                    .await
            {
                let self_id = m.into_inner().membership.map_or(0, |m| m.self_id);
                return (ch, self_id);
            }
        }
        assert!(Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A node without GPUs that holds the image, so submits validate and the
/// scheduler places jobs (its commands are part of the load).
async fn register_fake_node(ch: Channel) {
    let mut cp = ControlPlaneClient::new(ch);
    cp.register(RegisterRequest {
        node: "bench-node".into(),
        agent_addr: "127.0.0.1:9".into(),
        gpu_backend: GpuBackend::Simulated as i32,
        ..Default::default()
    })
    .await
    .expect("register");
    cp.report(ReportRequest {
        report: Some(NodeReport {
            node: "bench-node".into(),
            images: vec![ImageInfo {
                id: "sha256:bench".into(),
                tags: vec!["bench:latest".into()],
                ..Default::default()
            }],
            ..Default::default()
        }),
    })
    .await
    .expect("report");
}

fn submit_req(request_id: String) -> SubmitJobRequest {
    SubmitJobRequest {
        spec: Some(JobSpec {
            image: "bench:latest".into(),
            command: vec!["true".into()],
            ..Default::default()
        }),
        name: String::new(),
        request_id,
        dry_run: false,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() {
    let seconds = env_num("BENCH_SECONDS", 10);
    let clients = env_num("BENCH_CLIENTS", 64) as usize;
    let dir = tempfile::tempdir().unwrap();
    let (user, node) = credentials(dir.path());
    let (mut procs, addrs) = spawn_cluster(dir.path());
    eprintln!("controller logs: {}", dir.path().display());
    let (ch, leader_id) = leader(&user, &addrs).await;
    register_fake_node(leader(&node, &addrs).await.0).await;

    // Throughput and latency: `clients` closed-loop clients over 4 HTTP/2 connections.
    let mut channels = vec![ch.clone()];
    for _ in 1..4 {
        channels.push(leader(&user, &addrs).await.0);
    }
    let stop = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        // As the CLI's: the token, and the quick calls' deadline.
        let mut client = JobServiceClient::new(berth_proto::connect::authed(
            channels[c % channels.len()].clone(),
            user.bearer.clone(),
        ));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut n = 0u64;
            while Instant::now() < stop {
                let t = Instant::now();
                if client
                    .submit_job(submit_req(format!("b{c}-{n}")))
                    .await
                    .is_ok()
                {
                    lat.push(t.elapsed());
                }
                n += 1;
            }
            lat
        }));
    }
    let mut lat: Vec<Duration> = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort();
    let commits_per_s = lat.len() as f64 / elapsed;
    let (p50, p99) = (percentile(&lat, 0.50), percentile(&lat, 0.99));

    // Failover: SIGKILL the leader, then submit until the new leader acknowledges.
    let mut old = procs.0.remove(&leader_id).expect("leader process");
    let killed = Instant::now();
    let _ = old.kill();
    let _ = old.wait();
    let live: Vec<String> = addrs.clone();
    let failover_ms = loop {
        if let Ok((ch, _)) =
            berth_proto::connect::leader(&user, &live, Duration::from_millis(500)).await
        {
            let mut c =
                JobServiceClient::new(berth_proto::connect::authed(ch, user.bearer.clone()));
            if c.submit_job(submit_req(format!(
                "failover-{}",
                killed.elapsed().as_nanos()
            )))
            .await
            .is_ok()
            {
                break killed.elapsed().as_secs_f64() * 1e3;
            }
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no new leader accepted a write within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };

    // Compactions during the run, if the controllers were asked to log them
    // (RUST_LOG=berth_controller::raft=info): their cost shows in p99.
    for id in 1..=3 {
        let log =
            std::fs::read_to_string(dir.path().join(format!("c{id}.log"))).unwrap_or_default();
        for line in log.lines().filter(|l| l.contains("snapshot taken")) {
            eprintln!("  c{id}: {line}");
        }
    }
    println!(
        "raft benchmark: 3 berth-controller processes on loopback, {clients} clients, {seconds} s"
    );
    println!(
        "  committed submissions: {} ({commits_per_s:.0}/s)",
        lat.len()
    );
    println!("  commit latency: p50 {p50:.2} ms, p99 {p99:.2} ms");
    println!("  failover (leader SIGKILL -> first write accepted): {failover_ms:.0} ms");
    println!(
        "{}",
        serde_json::json!({
            "commits_per_s": commits_per_s.round(),
            "commit_p50_ms": (p50 * 100.0).round() / 100.0,
            "commit_p99_ms": (p99 * 100.0).round() / 100.0,
            "failover_ms": failover_ms.round(),
            "controllers": 3,
            "clients": clients,
            "seconds": seconds,
        })
    );
}
