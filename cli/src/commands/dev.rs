//! `berth dev`: a whole cluster in one process — a single-node controller and
//! an agent on the local Docker daemon. What a new user starts with.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use berth_agent::{runtime::Docker, Agent, AgentConfig};

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
}

pub async fn run(args: Args) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
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
    // A single-controller cluster: its identity is its id, so a dev data dir
    // keeps working when --listen picks another port.
    let ctl = berth_controller::Controller::open(berth_controller::ControllerConfig {
        id: 1,
        peers: [(1, addr.to_string())].into(),
        data_dir: data_dir.join("controller"),
        join: false,
        snapshot_every: 50_000,
    })
    .with_context(|| format!("opening {}", data_dir.display()))?;
    std::fs::write(data_dir.join("controller.addr"), addr.to_string())?;
    let node = args.name.clone().unwrap_or_else(berth_agent::hostname);
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
    };
    let agent = Agent::new(cfg, Arc::new(docker), gpus);
    tracing::info!(%addr, data_dir = %data_dir.display(), "berth dev: controller and agent up; try `berth nodes`");
    let leader = berth_controller::LeaderConfig {
        // A workstation's own images are not Berth's to evict unasked:
        // `berth image gc` still works.
        image_gc: berth_controller::leader::ImageGc {
            high_percent: 100,
            ..Default::default()
        },
        job_retention: Some(berth_controller::leader::DEFAULT_JOB_RETENTION),
    };
    let server = tokio::spawn(berth_controller::run(ctl, leader, listener, async {
        let _ = tokio::signal::ctrl_c().await;
    }));
    tokio::spawn(berth_agent::server::serve(agent.clone(), agent_listener));
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

fn default_data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join("berth")
}
