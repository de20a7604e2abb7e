//! `berth-controller`: config, tracing, bind, `server::run`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
#[command(
    version,
    about = "Berth controller: schedules GPU container jobs across agents"
)]
struct Args {
    /// Address for the gRPC API (clients and agents). Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:7450", env = "BERTH_LISTEN")]
    listen: SocketAddr,
    /// Where the command log and state live (sled).
    #[arg(
        long,
        default_value = "/var/lib/berth/controller",
        env = "BERTH_DATA_DIR"
    )]
    data_dir: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let ctl = berth_controller::Controller::open(&args.data_dir)
        .with_context(|| format!("opening data dir {}", args.data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    // Tests and scripts that asked for port 0 read the real address here.
    std::fs::write(args.data_dir.join("controller.addr"), addr.to_string())?;
    tracing::info!(%addr, data_dir = %args.data_dir.display(), cluster = %ctl.cluster_id(), "controller listening");
    berth_controller::server::run(ctl, listener, shutdown_signal()).await
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
