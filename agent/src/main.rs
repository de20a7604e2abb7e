//! `berth-agent`: config, tracing, Docker + GPU backends, then the agent loop
//! and its data-plane server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use berth_agent::{gpu::GpuBackend, runtime::Docker, Agent, AgentConfig};
use clap::Parser;

#[derive(Parser)]
#[command(
    version,
    about = "Berth agent: runs jobs on this host's Docker daemon and GPUs",
    // A flag given twice takes its last value (a unit file's defaults,
    // then the operator's), rather than refusing to start.
    args_override_self = true
)]
struct Args {
    /// Controller addresses, comma-separated (host:port,...).
    #[arg(
        long,
        env = "BERTH_CONTROLLERS",
        value_delimiter = ',',
        default_value = "127.0.0.1:7450"
    )]
    controllers: Vec<String>,
    /// Node name; defaults to the hostname. Keep it stable: it is the node's identity.
    #[arg(long, env = "BERTH_NODE")]
    name: Option<String>,
    /// Data-plane listen address (controllers dial it for logs). Port 0 picks one.
    #[arg(long, default_value = "127.0.0.1:7451")]
    listen: SocketAddr,
    /// Address controllers should dial; defaults to the bound listen address.
    #[arg(long)]
    advertise: Option<String>,
    /// Docker socket; defaults to DOCKER_HOST or /var/run/docker.sock.
    #[arg(long, env = "BERTH_DOCKER", default_value = "")]
    docker: String,
    /// Simulated GPUs when NVML is absent: N, or N:MODEL[:MEM],... (e.g. 2:A100:80G).
    #[arg(long)]
    fake_gpus: Option<String>,
    /// Simulated backend's foreign-process file: lines "INDEX PID NAME [MEM]".
    #[arg(long)]
    fake_foreign: Option<PathBuf>,
    /// Seconds between status reports.
    #[arg(long, default_value_t = 2.0)]
    report_every: f64,
    /// Placement label KEY=VALUE (repeatable), matched by `berth run --constraint`.
    #[arg(long = "label", env = "BERTH_LABELS", value_delimiter = ',')]
    labels: Vec<String>,
    /// Ask senders to compress image chunks (zstd) where that saves bytes.
    #[arg(long, env = "BERTH_IMAGE_COMPRESS", default_value = "true",
          value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::Set)]
    image_compress: bool,
    /// Ask senders to leave out the image layers this host already has.
    #[arg(long, env = "BERTH_IMAGE_SKIP_LAYERS", default_value = "true",
          value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::Set)]
    image_skip_layers: bool,
    /// Print the GPU inventory this host would report, as JSON, and exit.
    #[arg(long)]
    probe: bool,
    /// The cluster CA (ca.pem) and this node's certificate (cert.pem,
    /// key.pem; `berth-controller tls issue --node NAME`).
    #[arg(long, env = "BERTH_TLS_DIR", default_value = "/etc/berth/tls")]
    tls_dir: PathBuf,
    /// Join with this token (`berth token create --join`) when --tls-dir has
    /// only ca.pem: the agent makes its key, gets its node certificate and
    /// keeps both there. Renewal before expiry is automatic.
    #[arg(long, env = "BERTH_JOIN_TOKEN")]
    join_token: Option<String>,
    /// Append one JSON line per exec, cp and commit session to this file.
    #[arg(long, env = "BERTH_AUDIT_LOG")]
    audit_log: Option<PathBuf>,
    #[command(flatten)]
    limits: berth_agent::limits::HostLimits,
    #[command(flatten)]
    resources: berth_agent::resources::HostResources,
    /// Logs on stderr as text, or as one JSON object per line (json).
    #[arg(long, env = "BERTH_LOG_FORMAT", default_value = "text")]
    log_format: berth_proto::logs::LogFormat,
    /// Serve Prometheus metrics at https://ADDR/metrics (the node's
    /// certificate; a user's token, checked with a controller, as
    /// `Authorization: Bearer`). Its own variable: a host may run a
    /// controller too, reading the same /etc/default/berth.
    #[arg(long, env = "BERTH_AGENT_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    berth_proto::logs::init(args.log_format);
    if args.probe {
        // A hardware check: no cluster, no certificates needed.
        let node = args.name.clone().unwrap_or_else(berth_agent::hostname);
        let gpus =
            berth_agent::gpu_backend(&node, args.fake_gpus.as_deref(), args.fake_foreign.clone())?;
        return probe(gpus.as_ref(), &args.resources);
    }
    args.resources.check().map_err(anyhow::Error::msg)?;
    let (tls, node) = identity(&args).await?;
    let gpus =
        berth_agent::gpu_backend(&node, args.fake_gpus.as_deref(), args.fake_foreign.clone())?;
    let docker = Docker::connect(&args.docker).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let bound = listener.local_addr()?;
    let advertise = args.advertise.clone().unwrap_or_else(|| {
        if bound.ip().is_unspecified() {
            format!("{}:{}", berth_agent::hostname(), bound.port())
        } else {
            bound.to_string()
        }
    });
    let cfg = AgentConfig {
        node,
        controllers: args.controllers,
        advertise_addr: advertise.clone(),
        report_every: Duration::from_secs_f64(args.report_every.max(0.1)),
        stop_grace: Duration::from_secs(10),
        labels: args.labels,
        images: berth_agent::images::ImageOptions {
            compress: args.image_compress,
            skip_layers: args.image_skip_layers,
        },
        tls: berth_proto::tls::Current::new(tls),
        tls_dir: Some(args.tls_dir.clone()),
        audit: match &args.audit_log {
            Some(p) => Some(Arc::new(
                berth_agent::audit::Audit::open(p)
                    .with_context(|| format!("opening the audit log {}", p.display()))?,
            )),
            None => None,
        },
        protected_paths: vec![args.tls_dir.display().to_string()],
        limits: args.limits.clone(),
        resources: args.resources.clone(),
    };
    tracing::info!(node = %cfg.node, data_plane = %advertise, gpus = gpus.kind().word(), "agent starting");
    let agent = Agent::new(cfg, Arc::new(docker), gpus);
    if let Some(at) = args.metrics_listen {
        let l = tokio::net::TcpListener::bind(at)
            .await
            .with_context(|| format!("binding --metrics-listen {at}"))?;
        tracing::info!(url = %format!("https://{}/metrics", l.local_addr()?), "serving metrics");
        tokio::spawn(berth_agent::metrics::serve(agent.clone(), l));
    }
    let server = tokio::spawn(berth_agent::server::serve(agent.clone(), listener));
    tokio::spawn(berth_agent::certs::renew_forever(agent.clone()));
    tokio::select! {
        _ = agent.run() => {}
        r = server => {
            r??;
            anyhow::bail!("the data plane server stopped");
        }
        _ = shutdown_signal() => tracing::info!("shutting down; containers keep running and are adopted on restart"),
    }
    Ok(())
}

/// This node's TLS and name: the certificate in --tls-dir, got first with
/// --join-token when there is none; the name is the certificate's.
async fn identity(args: &Args) -> anyhow::Result<(berth_proto::tls::Tls, String)> {
    let mut tls = berth_proto::tls::Tls::load(&args.tls_dir)
        .with_context(|| format!("loading TLS from {}", args.tls_dir.display()))?;
    if tls.cert_pem.is_none() {
        if let Some(token) = &args.join_token {
            let node = args.name.clone().unwrap_or_else(berth_agent::hostname);
            tls = berth_agent::certs::join(&args.controllers, &tls, &node, token).await?;
            tls.save(&args.tls_dir)?;
            tracing::info!(%node, dir = %args.tls_dir.display(), "joined the cluster: node certificate saved");
        }
    }
    let cert_name = match tls.peer() {
        Some(berth_proto::tls::Peer::Node(n)) => n,
        Some(other) => anyhow::bail!("{}/cert.pem is {other}'s, not a node's", args.tls_dir.display()),
        None => anyhow::bail!(
            "{} has no node certificate (cert.pem, key.pem): join with --join-token (an admin runs `berth token create --join`), or sign one with `berth-controller tls issue --node NAME`",
            args.tls_dir.display()
        ),
    };
    if let Some(n) = args.name.as_ref().filter(|n| **n != cert_name) {
        anyhow::bail!(
            "--name {n} but the certificate in {} is for node {cert_name}: a node registers only under its certificate's name",
            args.tls_dir.display()
        );
    }
    Ok((tls, cert_name))
}

fn probe(
    gpus: &dyn GpuBackend,
    host: &berth_agent::resources::HostResources,
) -> anyhow::Result<()> {
    let samples = gpus.sample()?;
    let out: Vec<serde_json::Value> = samples
        .iter()
        .map(|g| {
            serde_json::json!({
                "index": g.index, "uuid": g.uuid, "model": g.model,
                "memory_total_bytes": g.memory_total_bytes, "memory_used_bytes": g.memory_used_bytes,
                "utilization_percent": g.utilization_percent,
                "temperature_celsius": g.temperature_celsius, "power_milliwatts": g.power_milliwatts,
                "topology_group": g.topology_group, "cpu_affinity": g.cpu_affinity,
                "processes": g.processes.iter().map(|p| serde_json::json!({"pid": p.pid, "name": p.name, "used_memory_bytes": p.used_memory_bytes})).collect::<Vec<_>>(),
            })
        })
        .collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "backend": gpus.kind().word(),
            "cpus": host.millicpus() as f64 / 1000.0,
            "memory_bytes": host.memory_bytes(),
            "numa_nodes": berth_agent::resources::numa_nodes(),
            "gpus": out,
        }))?
    );
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
