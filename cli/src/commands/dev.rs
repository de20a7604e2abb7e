//! `berth dev`: a whole cluster in one process — a single-node controller and
//! an agent on the local Docker daemon. What a new user starts with.
//!
//! Secure like any cluster, and still one command: on first start it makes
//! a CA, the node's certificate and an admin token in its data dir, and
//! writes the CLI's config (address, CA, token) so every `berth` command on
//! this machine just works.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use berth_agent::{runtime::Docker, Agent, AgentConfig};
use berth_controller::api::auth::{bootstrap, guard::Access};
use berth_proto::tls::{Peer, Tls};

#[derive(clap::Args)]
pub struct Args {
    /// API address. Port 0 picks a free one (written to DATA_DIR/controller.addr).
    #[arg(long, default_value = "127.0.0.1:7450")]
    listen: SocketAddr,
    /// State directory; defaults to $XDG_DATA_HOME/berth or ~/.local/share/berth.
    #[arg(long, env = "BERTH_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Simulated GPUs when NVML is absent: N, or N:MODEL[:MEM],...
    #[arg(long, default_value = "2")]
    fake_gpus: String,
    /// Simulated backend's foreign-process file: lines "INDEX PID NAME [MEM]".
    #[arg(long)]
    fake_foreign: Option<PathBuf>,
    /// Node name; defaults to the hostname.
    #[arg(long)]
    name: Option<String>,
    /// Docker socket; defaults to DOCKER_HOST or /var/run/docker.sock.
    #[arg(long, default_value = "")]
    docker: String,
    /// The host is lost after this long without a report (as
    /// `berth-controller --node-lost-after`).
    #[arg(long, default_value = "30s")]
    node_lost_after: humantime::Duration,
    /// Container retention, log limits and defaults, as `berth-agent`'s.
    #[command(flatten)]
    limits: berth_agent::limits::HostLimits,
    /// Logs on stderr as text, or as one JSON object per line (json).
    #[arg(long, env = "BERTH_LOG_FORMAT", default_value = "text")]
    log_format: berth_proto::logs::LogFormat,
    /// Serve the controller's and the agent's Prometheus metrics on one
    /// port, at https://ADDR/metrics (printed at start, and written to
    /// DATA_DIR/metrics.addr); the CLI's token reads them.
    #[arg(long, env = "BERTH_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Host ports Berth picks, and per-GPU CPU and memory defaults, as
    /// `berth-controller`'s.
    #[command(flatten)]
    hosts: berth_controller::scheduler::host::HostArgs,
    /// CPU and memory this host offers the scheduler, as `berth-agent`'s.
    #[command(flatten)]
    resources: berth_agent::resources::HostResources,
}

pub async fn run(args: Args) -> Result<()> {
    berth_proto::logs::init(args.log_format);
    args.resources.check().map_err(anyhow::Error::msg)?;
    let data_dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "binding {} (is another `berth dev` running? use --listen)",
                args.listen
            )
        })?;
    let addr = listener.local_addr()?;
    let node = args.name.clone().unwrap_or_else(berth_agent::hostname);
    let tls_dir = data_dir.join("tls");
    let (controller_tls, node_tls, token) = credentials(&tls_dir, &node)?;
    // A single-controller cluster: its identity is its id, so a dev data dir
    // keeps working when --listen picks another port.
    let ctl = berth_controller::Controller::open(berth_controller::ControllerConfig {
        id: 1,
        peers: [(1, addr.to_string())].into(),
        data_dir: data_dir.join("controller"),
        join: false,
        snapshot_every: 50_000,
        tls: controller_tls,
        node_lost_after: *args.node_lost_after,
        hosts: args.hosts.policy().map_err(anyhow::Error::msg)?,
        event_history: berth_controller::core::history::HISTORY_EVENTS,
    })
    .with_context(|| format!("opening {}", data_dir.display()))?;
    let config = crate::config::path();
    crate::config::write(
        &config,
        &crate::config::File {
            addr: addr.to_string(),
            ca: tls_dir.join("ca.pem").display().to_string(),
            token,
        },
    )?;
    // Written after the config: whoever waits for it can use `berth` at once.
    std::fs::write(data_dir.join("controller.addr"), addr.to_string())?;
    let gpus = berth_agent::gpu_backend(&node, Some(&args.fake_gpus), args.fake_foreign.clone())?;
    let docker = Docker::connect(&args.docker).await?;
    let agent_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let cfg = AgentConfig {
        node,
        controllers: vec![addr.to_string()],
        advertise_addr: agent_listener.local_addr()?.to_string(),
        report_every: Duration::from_secs(1),
        stop_grace: Duration::from_secs(10),
        labels: Vec::new(),
        images: Default::default(),
        tls: berth_proto::tls::Current::new(node_tls),
        tls_dir: Some(tls_dir.join("node")),
        audit: Some(std::sync::Arc::new(
            berth_agent::audit::Audit::open(&data_dir.join("agent-audit.log"))
                .context("opening the agent's audit log")?,
        )),
        protected_paths: vec![data_dir.display().to_string()],
        limits: args.limits.clone(),
        resources: args.resources.clone(),
    };
    let agent = Agent::new(cfg, Arc::new(docker), gpus);
    let web = match args.metrics_listen {
        Some(at) => {
            let listener = tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("binding --metrics-listen {at}"))?;
            let bound = listener.local_addr()?;
            std::fs::write(data_dir.join("metrics.addr"), bound.to_string())?;
            eprintln!(
                "dashboard: https://{bound}/ and metrics: https://{bound}/metrics (CA {}; `berth dashboard` prints a link that signs you in)",
                tls_dir.join("ca.pem").display()
            );
            Some(berth_controller::api::web::Web {
                listener,
                extra: vec![Arc::new(berth_agent::metrics::registry(&agent.cfg.node))],
            })
        }
        None => None,
    };
    tracing::info!(%addr, data_dir = %data_dir.display(), config = %config.display(), "berth dev: controller and agent up (TLS, admin token in the config); try `berth nodes`");
    let leader = berth_controller::LeaderConfig {
        // A workstation's own images are not Berth's to evict unasked:
        // `berth image gc` still works.
        image_gc: berth_controller::leader::ImageGc {
            high_percent: 100,
            ..Default::default()
        },
        job_retention: Some(berth_controller::leader::DEFAULT_JOB_RETENTION),
        usage_detail: Some(berth_controller::leader::DEFAULT_USAGE_DETAIL),
    };
    let access = Access {
        bootstrap_hash: bootstrap::bootstrap_hash(&tls_dir),
        audit: Some(
            berth_controller::api::auth::audit::Audit::open(&data_dir.join("audit.log"))
                .context("opening the audit log")?,
        ),
        priority_ceiling: berth_controller::api::auth::rules::DEFAULT_PRIORITY_CEILING,
        max_queued_per_user: 10_000,
        protected_paths: vec![data_dir.display().to_string()],
        ca: bootstrap::ca(&tls_dir).ok(),
        submit_rate: Access::submit_rate(100),
        submit_rate_per_second: 100,
    };
    let server = tokio::spawn(berth_controller::run(
        ctl,
        leader,
        access,
        listener,
        web,
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
    ));
    tokio::spawn(berth_agent::server::serve(agent.clone(), agent_listener));
    tokio::spawn(berth_agent::certs::renew_forever(agent.clone()));
    tokio::select! {
        _ = agent.run() => Ok(()),
        r = server => r?,
        // As for berth-controller: open streams would keep a graceful stop waiting.
        () = async {
            let _ = tokio::signal::ctrl_c().await;
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        } => Ok(()),
    }
}

/// The controller's and the node's certificates and the admin token, made
/// on first start (and the node's again if `--name` changed).
fn credentials(tls_dir: &Path, node: &str) -> Result<(Tls, Tls, String)> {
    if !tls_dir.join("ca.pem").exists() {
        bootstrap::init(tls_dir, "dev")?;
    }
    // 127.0.0.1 too: the dashboard link `berth dashboard` prints names it.
    let controller =
        bootstrap::controller_tls(tls_dir, 1, &["localhost".into(), "127.0.0.1".into()])?;
    let node_dir = tls_dir.join("node");
    let node_tls = match Tls::load(&node_dir) {
        Ok(t) if t.peer() == Some(Peer::Node(node.to_string())) => t,
        _ => {
            bootstrap::issue(
                tls_dir,
                &Peer::Node(node.to_string()),
                &[],
                berth_proto::tls::NODE_CERT_LIFETIME,
                &node_dir,
            )?;
            Tls::load(&node_dir)?
        }
    };
    let token = std::fs::read_to_string(tls_dir.join("admin.token"))
        .with_context(|| format!("reading {}/admin.token", tls_dir.display()))?;
    Ok((controller, node_tls, token.trim().to_string()))
}

fn default_data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join("berth")
}
