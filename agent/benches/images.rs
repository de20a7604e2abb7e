//! `cargo bench --bench images`: Berth's agent-to-agent image transfer
//! against `docker save IMAGE | docker -H OTHER load`, on the same daemons and
//! images, in the same run.
//!
//! Starts its own daemons (one source, four targets; each its own data root,
//! exec root and socket, vfs storage), builds two images in the source
//! (~100 MB and ~1 GB, each half incompressible random bytes and half text,
//! in separate layers, `FROM scratch`), and runs one in-process agent per
//! daemon serving the real gRPC data plane on loopback. For each size: the
//! pipe, then Berth (target agent's FetchImage from the source agent), the
//! image removed from the target between runs; best of `BENCH_RUNS` (2).
//! Then layer skipping: an image FROM the 100 MB one plus a 10 MB layer, to
//! a target holding the base (whole archive vs layers left out, and the
//! pipe). Then fan-out: the 100 MB image to 4 targets at once, against one
//! transfer, with four pipes and four loads at once for context.
//! Needs root (dockerd). The last line is a JSON object.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_agent::agent::{Agent, AgentConfig};
use berth_agent::gpu::{parse_spec, SimGpus};
use berth_agent::images::ImageOptions;
use berth_agent::runtime::Docker;
use berth_proto::internal::v1::agent_service_client::AgentServiceClient;
use berth_proto::internal::v1::FetchImageRequest;

/// The bench daemons' storage driver: vfs unless `BENCH_STORAGE_DRIVER`
/// says otherwise. (overlay2, tried where the kernel mounts overlays, was
/// no faster here: pipe 1.62 s against vfs's 1.34 s for the 100 MB image.)
fn storage_driver() -> String {
    std::env::var("BENCH_STORAGE_DRIVER").unwrap_or_else(|_| "vfs".into())
}

struct Daemon {
    dir: PathBuf,
    child: Child,
}

impl Daemon {
    fn start(root: &Path, name: &str) -> Daemon {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("daemon.json"), "{}").unwrap();
        let log = std::fs::File::create(dir.join("log")).unwrap();
        // Own network namespace: with --bridge=none, dockerd deletes the
        // host's docker0 (see tests/src/dockerd.rs).
        let child = Command::new("unshare")
            .args(["--net", "dockerd"])
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("x"))
            .arg("--pidfile")
            .arg(dir.join("pid"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("sock").display()))
            .args(["--bridge=none", "--iptables=false", "--ip-masq=false"])
            .arg(format!("--storage-driver={}", storage_driver()))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dockerd (run the bench as root)");
        let d = Daemon { dir, child };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !d.docker(&["info"]).status.success() {
            assert!(Instant::now() < deadline, "dockerd {name} did not start");
            std::thread::sleep(Duration::from_millis(200));
        }
        d
    }

    fn socket(&self) -> String {
        self.dir.join("sock").display().to_string()
    }

    fn host(&self) -> String {
        format!("unix://{}", self.socket())
    }

    fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .arg("-H")
            .arg(self.host())
            .args(args)
            .output()
            .unwrap()
    }

    /// Removes `image` and every other unused image (a clean slate).
    fn rmi(&self, image: &str) {
        self.docker(&["rmi", "-f", image]);
        self.docker(&["image", "prune", "-af"]);
    }

    /// Removes `image` alone: the images it was built on stay.
    fn rmi_one(&self, image: &str) {
        self.docker(&["rmi", "-f", image]);
    }

    fn id(&self, image: &str) -> Option<String> {
        let o = self.docker(&["image", "inspect", "--format", "{{.Id}}", image]);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds `tag` in `d`: one layer of random bytes, one of text, `mb` in all.
fn build_image(d: &Daemon, root: &Path, tag: &str, mb: usize) {
    let ctx = root.join(format!("ctx-{mb}"));
    std::fs::create_dir_all(&ctx).unwrap();
    let half = mb << 19;
    let mut x: u64 = 0x9E3779B97F4A7C15 ^ mb as u64;
    let random: Vec<u8> = (0..half)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(ctx.join("weights.bin"), random).unwrap();
    let line = b"epoch 12 step 3400 loss 0.2931 lr 0.00030 grad_norm 1.22 tokens/s 51234\n";
    let text: Vec<u8> = line.iter().copied().cycle().take(half).collect();
    std::fs::write(ctx.join("train.log"), text).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY weights.bin /data/\nCOPY train.log /data/\n",
    )
    .unwrap();
    docker_build(d, &ctx, tag);
}

/// `docker build` of the context `ctx` as `tag` in `d`, then removes `ctx`.
fn docker_build(d: &Daemon, ctx: &Path, tag: &str) {
    let out = Command::new("docker")
        .arg("-H")
        .arg(d.host())
        .args(["build", "-q", "-t", tag])
        .arg(ctx)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(ctx);
}

/// Builds `tag` FROM `base` in `d`, with one more layer of `mb` random bytes.
fn build_derived(d: &Daemon, root: &Path, base: &str, tag: &str, mb: usize) {
    let ctx = root.join("ctx-derived");
    std::fs::create_dir_all(&ctx).unwrap();
    let mut x: u64 = 0xD1B54A32D192ED03;
    let random: Vec<u8> = (0..mb << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(ctx.join("new.bin"), random).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {base}\nCOPY new.bin /data/\n"),
    )
    .unwrap();
    docker_build(d, &ctx, tag);
}

/// `docker save | docker load` from `src` to `dst`, timed.
fn pipe(src: &Daemon, dst: &Daemon, image: &str) -> Duration {
    let t = Instant::now();
    let mut save = Command::new("docker")
        .arg("-H")
        .arg(src.host())
        .args(["save", image])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let load = Command::new("docker")
        .arg("-H")
        .arg(dst.host())
        .args(["load", "-q"])
        .stdin(save.stdout.take().unwrap())
        .output()
        .unwrap();
    save.wait().unwrap();
    assert!(
        load.status.success(),
        "docker load: {}",
        String::from_utf8_lossy(&load.stderr)
    );
    t.elapsed()
}

/// One CA for the bench's agents: their streams are mutual TLS, as in a cluster.
fn tls(node: &str) -> berth_proto::tls::Tls {
    static CA: std::sync::OnceLock<berth_proto::tls::Ca> = std::sync::OnceLock::new();
    CA.get_or_init(|| berth_proto::tls::Ca::generate("bench").unwrap())
        .issue(
            &berth_proto::tls::Peer::Node(node.into()),
            &[],
            berth_proto::tls::NODE_CERT_LIFETIME,
        )
        .unwrap()
}

async fn agent(d: &Daemon, name: &str) -> String {
    agent_with(d, name, ImageOptions::default()).await
}

/// An agent on `d` asking for images as `images` says.
async fn agent_with(d: &Daemon, name: &str, images: ImageOptions) -> String {
    let docker = Docker::connect(&d.socket()).await.unwrap();
    let a = Agent::new(
        AgentConfig {
            node: name.into(),
            controllers: vec![],
            advertise_addr: String::new(),
            report_every: Duration::from_secs(1),
            stop_grace: Duration::from_secs(1),
            labels: vec![],
            images,
            tls: berth_proto::tls::Current::new(tls(name)),
            tls_dir: None,
            audit: None,
            protected_paths: Vec::new(),
            limits: Default::default(),
            resources: Default::default(),
        },
        Arc::new(docker),
        Arc::new(SimGpus::new(parse_spec("0").unwrap(), name, None)),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(berth_agent::server::serve(a, l));
    addr
}

/// The target agent fetches `image` from `sources` (the first is tried
/// first), relaying it to `downstream` agents; returns (time, wire bytes,
/// raw bytes).
async fn berth_from(
    target: &str,
    sources: &[String],
    downstream: u32,
    image: &str,
) -> (Duration, u64, u64) {
    let t = Instant::now();
    let ch = berth_proto::connect::endpoint(target, &tls("bench"), berth_proto::tls::NODE_DOMAIN)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = AgentServiceClient::new(ch);
    let mut s = c
        .fetch_image(FetchImageRequest {
            image: image.into(),
            sources: sources.to_vec(),
            image_size: 0,
            downstream,
        })
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(p) = s.message().await.unwrap() {
        last = Some(p);
    }
    let p = last.expect("progress");
    assert!(p.done, "transfer did not finish: {p:?}");
    (t.elapsed(), p.wire_bytes, p.bytes_done)
}

async fn berth(target: &str, source: &str, image: &str) -> (Duration, u64, u64) {
    berth_from(target, &[source.to_string()], 0, image).await
}

fn main() {
    if std::env::var("RUST_LOG").is_ok() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let root = tempfile::Builder::new()
        .prefix("bb")
        .tempdir_in("/tmp")
        .unwrap();
    let src = Daemon::start(root.path(), "s");
    let targets: Vec<Daemon> = (0..4)
        .map(|i| Daemon::start(root.path(), &format!("t{i}")))
        .collect();
    // BENCH_QUICK: the 100 MB image only (for trying changes).
    let quick = std::env::var("BENCH_QUICK").is_ok();
    let all_sizes = [(100, "bench/img100:1"), (1000, "bench/img1000:1")];
    let sizes = if quick {
        &all_sizes[..1]
    } else {
        &all_sizes[..]
    };
    for &(mb, tag) in sizes {
        build_image(&src, root.path(), tag, mb);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let src_addr = rt.block_on(agent(&src, "s"));
    let t_addrs: Vec<String> = targets
        .iter()
        .enumerate()
        .map(|(i, d)| rt.block_on(agent(d, &format!("t{i}"))))
        .collect();
    let mut ratios = Vec::new();
    for &(mb, tag) in sizes {
        let want = src.id(tag);
        let (mut best_pipe, mut best_berth, mut wire, mut raw) =
            (Duration::MAX, Duration::MAX, 0, 0);
        for _ in 0..runs {
            targets[0].rmi(tag);
            best_pipe = best_pipe.min(pipe(&src, &targets[0], tag));
            assert_eq!(targets[0].id(tag), want);
            targets[0].rmi(tag);
            let (t, w, r) = rt.block_on(berth(&t_addrs[0], &src_addr, tag));
            assert_eq!(
                targets[0].id(tag),
                want,
                "same image id after Berth's transfer"
            );
            if t < best_berth {
                (best_berth, wire, raw) = (t, w, r);
            }
        }
        let ratio = best_berth.as_secs_f64() / best_pipe.as_secs_f64();
        println!(
            "{mb} MB image: pipe {:.2} s, berth {:.2} s, ratio {ratio:.2} (archive {} MB, {} MB on the wire)",
            best_pipe.as_secs_f64(),
            best_berth.as_secs_f64(),
            raw >> 20,
            wire >> 20
        );
        ratios.push((ratio, best_pipe, best_berth, raw, wire));
    }
    // Layer skipping: an image built FROM the 100 MB one plus a 10 MB layer,
    // to a target that already holds the base (a new checkpoint of a model
    // the host has run before).
    let (base, derived) = (sizes[0].1, "bench/derived:1");
    // The same target daemon, through an agent that asks for every layer.
    let no_skip = ImageOptions {
        skip_layers: false,
        ..ImageOptions::default()
    };
    let whole_addr = rt.block_on(agent_with(&targets[1], "t1-whole", no_skip));
    build_derived(&src, root.path(), base, derived, 10);
    let want = src.id(derived);
    let (mut pipe_d, mut full, mut skip) = (Duration::MAX, Duration::MAX, Duration::MAX);
    let (mut full_wire, mut skip_wire) = (0, 0);
    if targets[1].id(base).is_none() {
        pipe(&src, &targets[1], base);
    }
    for _ in 0..runs {
        targets[1].rmi_one(derived);
        pipe_d = pipe_d.min(pipe(&src, &targets[1], derived));
        targets[1].rmi_one(derived);
        let (t, w, _) = rt.block_on(berth(&whole_addr, &src_addr, derived));
        assert_eq!(targets[1].id(derived), want);
        if t < full {
            (full, full_wire) = (t, w);
        }
        targets[1].rmi_one(derived);
        let (t, w, _) = rt.block_on(berth(&t_addrs[1], &src_addr, derived));
        assert_eq!(targets[1].id(derived), want, "same id with layers skipped");
        if t < skip {
            (skip, skip_wire) = (t, w);
        }
    }
    println!(
        "layer skip (100 MB base + 10 MB layer, the target has the base): pipe {:.2} s, berth whole archive {:.2} s ({} MB on the wire), berth skipping {:.2} s ({} MB on the wire)",
        pipe_d.as_secs_f64(),
        full.as_secs_f64(),
        full_wire >> 20,
        skip.as_secs_f64(),
        skip_wire >> 20
    );
    // Fan-out: the 100 MB image to 4 targets at once.
    let tag = sizes[0].1;
    for t in &targets {
        t.rmi(tag);
    }
    let (one, _, _) = rt.block_on(berth(&t_addrs[0], &src_addr, tag));
    targets[0].rmi(tag);
    let t = Instant::now();
    rt.block_on(async {
        // A chain, as the controller plans it: each target reads from the
        // one before while that one is still receiving.
        let all: Vec<_> = t_addrs
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let mut sources = Vec::new();
                if i > 0 {
                    sources.push(t_addrs[i - 1].clone());
                }
                sources.push(src_addr.clone());
                let downstream = u32::from(i + 1 < t_addrs.len());
                async move { berth_from(a, &sources, downstream, tag).await }
            })
            .collect();
        futures::future::join_all(all).await
    });
    let four = t.elapsed();
    for d in &targets {
        assert_eq!(d.id(tag), src.id(tag));
    }
    let fan = four.as_secs_f64() / one.as_secs_f64();
    // Context on this machine: the same fan-out with four `save | load`
    // pipes at once, and the floor — four `docker load`s of a saved archive
    // at once (what the targets' daemons must do whatever feeds them).
    for t in &targets {
        t.rmi(tag);
    }
    let t = Instant::now();
    std::thread::scope(|s| {
        for d in &targets {
            s.spawn(|| pipe(&src, d, tag));
        }
    });
    let pipes4 = t.elapsed();
    let archive = root.path().join("a.tar");
    let saved = src.docker(&["save", "-o", archive.to_str().unwrap(), tag]);
    assert!(saved.status.success());
    for t in &targets {
        t.rmi(tag);
    }
    let t = Instant::now();
    std::thread::scope(|s| {
        for d in &targets {
            s.spawn(|| d.docker(&["load", "-q", "-i", archive.to_str().unwrap()]));
        }
    });
    let loads4 = t.elapsed();
    println!(
        "context: four save|load pipes at once {:.2} s ({:.2}x one transfer); four docker loads of a saved archive at once {:.2} s ({:.2}x)",
        pipes4.as_secs_f64(),
        pipes4.as_secs_f64() / one.as_secs_f64(),
        loads4.as_secs_f64(),
        loads4.as_secs_f64() / one.as_secs_f64()
    );
    println!(
        "fan-out of the 100 MB image: one target {:.2} s, four targets {:.2} s, ratio {fan:.2}",
        one.as_secs_f64(),
        four.as_secs_f64()
    );
    println!(
        "{}",
        serde_json::json!({
            "ratio_vs_pipe_100mb": (ratios[0].0 * 100.0).round() / 100.0,
            "ratio_vs_pipe_1gb": ratios.get(1).map(|r| (r.0 * 100.0).round() / 100.0),
            "pipe_100mb_s": (ratios[0].1.as_secs_f64() * 100.0).round() / 100.0,
            "berth_100mb_s": (ratios[0].2.as_secs_f64() * 100.0).round() / 100.0,
            "pipe_1gb_s": ratios.get(1).map(|r| (r.1.as_secs_f64() * 100.0).round() / 100.0),
            "berth_1gb_s": ratios.get(1).map(|r| (r.2.as_secs_f64() * 100.0).round() / 100.0),
            "wire_over_archive_1gb": ratios.get(1).map(|r| (r.4 as f64 / r.3.max(1) as f64 * 100.0).round() / 100.0),
            "fanout4_vs_one": (fan * 100.0).round() / 100.0,
            "pipes4_vs_one": (pipes4.as_secs_f64() / one.as_secs_f64() * 100.0).round() / 100.0,
            "loads4_vs_one": (loads4.as_secs_f64() / one.as_secs_f64() * 100.0).round() / 100.0,
            "derived_pipe_s": (pipe_d.as_secs_f64() * 100.0).round() / 100.0,
            "derived_berth_whole_s": (full.as_secs_f64() * 100.0).round() / 100.0,
            "derived_berth_skip_s": (skip.as_secs_f64() * 100.0).round() / 100.0,
            "derived_skip_vs_pipe": (skip.as_secs_f64() / pipe_d.as_secs_f64() * 100.0).round() / 100.0,
            "derived_wire_whole_mb": full_wire >> 20,
            "derived_wire_skip_mb": skip_wire >> 20,
        })
    );
    drop(rt);
}
