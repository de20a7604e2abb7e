//! `berth-controller`: config, tracing, bind, `server::run`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Parser;

#[derive(Parser)]
#[command(
    version,
    about = "Berth controller: schedules GPU container jobs across agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    args: Args,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// The cluster's certificates.
    #[command(subcommand)]
    Tls(TlsCmd),
    /// Write a consistent snapshot of the running cluster's state to FILE
    /// (online; as an admin: BERTH_TOKEN, else DIR/admin.token).
    Backup {
        #[arg(long)]
        out: PathBuf,
        /// Controllers to ask (the leader among them answers).
        #[arg(
            long,
            env = "BERTH_ADDR",
            default_value = "127.0.0.1:7450",
            value_delimiter = ','
        )]
        addr: Vec<String>,
        /// The cluster CA (ca.pem) and, unless BERTH_TOKEN is set, admin.token.
        #[arg(long, env = "BERTH_TLS_DIR", default_value = "/etc/berth/tls")]
        tls_dir: PathBuf,
    },
    /// Make a new data dir from a backup: a controller started on it has
    /// every job, node, token and policy of the backup (docs/operations.md).
    Restore {
        file: PathBuf,
        #[arg(long)]
        data_dir: PathBuf,
        /// The restored controller's id.
        #[arg(long, default_value_t = 1)]
        id: u64,
        /// The new cluster's controllers, as for a start (ID=HOST:PORT,...);
        /// omitted: this one alone, at 127.0.0.1:7450.
        #[arg(long, default_value = "")]
        peers: String,
    },
}

#[derive(clap::Subcommand)]
enum TlsCmd {
    /// Create a cluster CA and the first admin's token in DIR: copy DIR to
    /// every controller (--tls-dir); agents need only DIR/ca.pem and a join
    /// token.
    Init {
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a certificate with the CA in --ca-dir, into --out (ca.pem,
    /// cert.pem, key.pem): for an agent that cannot use a join token.
    Issue {
        #[arg(long)]
        ca_dir: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// A node certificate for this node name.
        #[arg(long, conflicts_with = "controller")]
        node: Option<String>,
        /// A controller certificate for this id.
        #[arg(long)]
        controller: Option<u64>,
        /// Extra host names or IPs the certificate is valid for.
        #[arg(long = "san")]
        sans: Vec<String>,
        /// How long it is valid (nodes renew theirs in its last third).
        #[arg(long, default_value = "30d")]
        lifetime: humantime::Duration,
    },
}

#[derive(clap::Args)]
struct Args {
    /// Address for the gRPC API (clients, agents, other controllers). Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:7450", env = "BERTH_LISTEN")]
    listen: SocketAddr,
    /// Where the raft log, snapshots and state live (sled).
    #[arg(
        long,
        default_value = "/var/lib/berth/controller",
        env = "BERTH_DATA_DIR"
    )]
    data_dir: PathBuf,
    /// This controller's id in --peers.
    #[arg(long, default_value_t = 1, env = "BERTH_ID")]
    id: u64,
    /// All controllers: 1=HOST:PORT,2=HOST:PORT,3=HOST:PORT. Omitted: a
    /// single-controller cluster at --listen.
    #[arg(long, env = "BERTH_PEERS", default_value = "")]
    peers: String,
    /// Join a running cluster: start with an empty log and wait for the
    /// leader to add this controller (`berth controller add ID ADDR`).
    #[arg(long)]
    join: bool,
    /// Snapshot the state and compact the raft log every N entries.
    #[arg(long, default_value_t = 50_000)]
    snapshot_every: u64,
    /// Image GC starts on a host whose Docker disk is more than this % used
    /// (100: never)...
    #[arg(long, env = "BERTH_IMAGE_GC_HIGH", default_value_t = 85, value_parser = clap::value_parser!(u32).range(1..=100))]
    image_gc_high: u32,
    /// ...and removes least-recently-used unneeded images down to this %.
    #[arg(long, env = "BERTH_IMAGE_GC_LOW", default_value_t = 80, value_parser = clap::value_parser!(u32).range(0..=100))]
    image_gc_low: u32,
    /// Seconds between two looks at the hosts' disks.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    image_gc_interval: u64,
    /// Finished jobs are forgotten this long after they ended (leaving
    /// `ps -a`, `inspect` and the state); 0 keeps them forever.
    #[arg(long, env = "BERTH_JOB_RETENTION", default_value = "7d")]
    job_retention: humantime::Duration,
    /// The usage ledger keeps each run this long (`berth usage --by job`),
    /// then sums runs per day, user, host and GPU model; 0 keeps every run.
    #[arg(long, env = "BERTH_USAGE_DETAIL", default_value = "90d")]
    usage_detail: humantime::Duration,
    /// The cluster CA (ca.pem, ca.key from `tls init`); this controller
    /// mints its own certificate from it at start.
    #[arg(long, env = "BERTH_TLS_DIR", default_value = "/etc/berth/tls")]
    tls_dir: PathBuf,
    /// Append one JSON line per mutating request (who, from where, what,
    /// outcome) to this file.
    #[arg(long, env = "BERTH_AUDIT_LOG")]
    audit_log: Option<PathBuf>,
    /// Users may submit up to this priority; above needs an admin.
    #[arg(long, default_value_t = 100)]
    max_user_priority: i32,
    /// Queued jobs one user may have at once (0: no cap).
    #[arg(long, default_value_t = 10_000)]
    max_queued_per_user: u32,
    /// Submits per second one user may make, with bursts of ten times
    /// that (0: no cap).
    #[arg(long, default_value_t = 100)]
    max_submits_per_second: u32,
    /// A host silent this long has lost its jobs: they fail or run again
    /// elsewhere (each job's --on-host-lost). Its agent stops them itself
    /// after half of it (docs/operations.md). At least 2s.
    #[arg(long, env = "BERTH_NODE_LOST_AFTER", default_value = "30s")]
    node_lost_after: humantime::Duration,
    /// Events kept in memory for watches that resume from a revision
    /// (`berth events --since`); older revisions must list again.
    #[arg(long, default_value_t = berth_controller::core::history::HISTORY_EVENTS as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    event_history: u64,
    /// Logs on stderr as text, or as one JSON object per line (json).
    #[arg(long, env = "BERTH_LOG_FORMAT", default_value = "text")]
    log_format: berth_proto::logs::LogFormat,
    /// Serve Prometheus metrics at https://ADDR/metrics (this controller's
    /// certificate; a viewer's token or better as `Authorization: Bearer`).
    /// Port 0 picks one (written to DATA_DIR/metrics.addr).
    #[arg(long, env = "BERTH_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    hosts: berth_controller::scheduler::host::HostArgs,
}

fn tls_command(cmd: TlsCmd) -> anyhow::Result<()> {
    use berth_controller::api::auth::bootstrap;
    match cmd {
        TlsCmd::Init { out } => {
            let token = bootstrap::init(&out, "berth")?;
            eprintln!(
                "created the cluster CA in {dir} (ca.pem, ca.key) and the first admin token ({dir}/admin.token).\n\
                 controllers: --tls-dir {dir} (copy it to each); agents: {dir}/ca.pem and `berth token create --join`.\n\
                 the admin token, shown once more below, is for `berth` (BERTH_TOKEN or ~/.config/berth/config.toml):",
                dir = out.display()
            );
            println!("{token}");
        }
        TlsCmd::Issue {
            ca_dir,
            out,
            node,
            controller,
            sans,
            lifetime,
        } => {
            let peer = match (node, controller) {
                (Some(n), None) => berth_proto::tls::Peer::Node(n),
                (None, Some(id)) if id > 0 => berth_proto::tls::Peer::Controller(id),
                _ => bail!("say whom the certificate is for: --node NAME or --controller ID"),
            };
            bootstrap::issue(&ca_dir, &peer, &sans, *lifetime, &out)?;
            eprintln!("wrote {peer}'s certificate to {}", out.display());
        }
    }
    Ok(())
}

/// `backup`: as an admin, over TLS, from the leader.
async fn backup(
    out: &std::path::Path,
    addrs: &[String],
    tls_dir: &std::path::Path,
) -> anyhow::Result<()> {
    let ca = std::fs::read_to_string(tls_dir.join("ca.pem"))
        .with_context(|| format!("reading the cluster CA {}/ca.pem", tls_dir.display()))?;
    let token = match std::env::var("BERTH_TOKEN") {
        Ok(t) if !t.trim().is_empty() => t,
        _ => std::fs::read_to_string(tls_dir.join("admin.token")).with_context(|| {
            format!(
                "no BERTH_TOKEN and no {}/admin.token: an admin's token is needed",
                tls_dir.display()
            )
        })?,
    };
    let dial = berth_proto::connect::Dial {
        tls: berth_proto::tls::Tls::ca_only(ca),
        bearer: berth_proto::connect::Bearer::new(Some(&token)).map_err(anyhow::Error::msg)?,
    };
    let s = berth_controller::core::backup::download(&dial, addrs, out).await?;
    eprintln!(
        "backed up {} job(s) and {} node(s) as of index {} ({} bytes) to {}",
        s.jobs,
        s.nodes,
        s.index,
        s.bytes,
        out.display()
    );
    Ok(())
}

fn parse_peers(s: &str) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut peers = BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((id, addr)) = item.split_once('=') else {
            bail!("--peers entry {item:?} must look like ID=HOST:PORT");
        };
        let id: u64 = id
            .parse()
            .with_context(|| format!("--peers: {id:?} is not a number"))?;
        if id == 0 {
            bail!("--peers: ids start at 1");
        }
        if peers.insert(id, addr.to_string()).is_some() {
            bail!("--peers: id {id} is listed twice");
        }
    }
    Ok(peers)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    berth_proto::logs::init(cli.args.log_format);
    match cli.command {
        Some(Sub::Tls(cmd)) => return tls_command(cmd),
        Some(Sub::Backup { out, addr, tls_dir }) => return backup(&out, &addr, &tls_dir).await,
        Some(Sub::Restore {
            file,
            data_dir,
            id,
            peers,
        }) => {
            let mut peers = parse_peers(&peers)?;
            if peers.is_empty() {
                peers.insert(id, "127.0.0.1:7450".into());
            }
            let s = berth_controller::core::backup::restore(&file, &data_dir, id, &peers)?;
            eprintln!(
                "restored {} job(s) and {} node(s) as of index {} into {}: start berth-controller --data-dir {} --id {id} --peers {}",
                s.jobs,
                s.nodes,
                s.index,
                data_dir.display(),
                data_dir.display(),
                berth_controller::core::peers_text(&peers)
            );
            return Ok(());
        }
        None => {}
    }
    let args = cli.args;
    if *args.node_lost_after < std::time::Duration::from_secs(2) {
        bail!("--node-lost-after {} is too short: a host's jobs would be lost at its first slow report; use 2s or more (the default is 30s)", args.node_lost_after);
    }
    let mut peers = parse_peers(&args.peers)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    if peers.is_empty() {
        peers.insert(args.id, addr.to_string());
    }
    let names = cert_names(addr);
    let tls =
        berth_controller::api::auth::bootstrap::controller_tls(&args.tls_dir, args.id, &names)
            .with_context(|| format!("loading TLS from {}", args.tls_dir.display()))?;
    let ctl = berth_controller::Controller::open(berth_controller::ControllerConfig {
        id: args.id,
        peers: peers.clone(),
        data_dir: args.data_dir.clone(),
        join: args.join,
        snapshot_every: args.snapshot_every.max(100),
        tls,
        node_lost_after: *args.node_lost_after,
        event_history: args.event_history as usize,
        hosts: args.hosts.policy().map_err(anyhow::Error::msg)?,
    })
    .with_context(|| format!("opening data dir {}", args.data_dir.display()))?;
    let web = match args.metrics_listen {
        Some(at) => {
            let listener = tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("binding --metrics-listen {at}"))?;
            let bound = listener.local_addr()?;
            std::fs::write(args.data_dir.join("metrics.addr"), bound.to_string())?;
            tracing::info!(url = %format!("https://{bound}/"), "serving metrics (/metrics) and the dashboard (/)");
            Some(berth_controller::api::web::Web {
                listener,
                extra: Vec::new(),
            })
        }
        None => None,
    };
    // Tests and scripts that asked for port 0 read the real address here.
    std::fs::write(args.data_dir.join("controller.addr"), addr.to_string())?;
    tracing::info!(%addr, id = args.id, peers = %berth_controller::core::peers_text(&peers), data_dir = %args.data_dir.display(), "controller listening");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let leader = berth_controller::LeaderConfig {
        image_gc: berth_controller::leader::ImageGc {
            high_percent: args.image_gc_high,
            low_percent: args.image_gc_low.min(args.image_gc_high),
            every: std::time::Duration::from_secs(args.image_gc_interval),
        },
        job_retention: Some(*args.job_retention).filter(|d| !d.is_zero()),
        usage_detail: Some(*args.usage_detail).filter(|d| !d.is_zero()),
    };
    let access = berth_controller::api::auth::guard::Access {
        bootstrap_hash: berth_controller::api::auth::bootstrap::bootstrap_hash(&args.tls_dir),
        audit: match &args.audit_log {
            Some(p) => Some(
                berth_controller::api::auth::audit::Audit::open(p)
                    .with_context(|| format!("opening the audit log {}", p.display()))?,
            ),
            None => None,
        },
        priority_ceiling: args.max_user_priority,
        max_queued_per_user: args.max_queued_per_user,
        protected_paths: vec![
            args.data_dir.display().to_string(),
            args.tls_dir.display().to_string(),
        ],
        ca: berth_controller::api::auth::bootstrap::ca(&args.tls_dir).ok(),
        submit_rate: berth_controller::api::auth::guard::Access::submit_rate(
            args.max_submits_per_second,
        ),
        submit_rate_per_second: args.max_submits_per_second,
    };
    let handle = ctl.clone();
    let server = berth_controller::run(ctl, leader, access, listener, web, async {
        let _ = stopped.await;
    });
    tokio::select! {
        r = server => r,
        () = async {
            shutdown_signal().await;
            // A planned stop (an upgrade, a reboot) of the leader hands over
            // first: the next leader takes over now instead of after an
            // election timeout, and clients barely notice.
            if handle.is_leader() && handle.raft.status().voters.len() > 1 {
                match handle.transfer_leadership(0).await {
                    Ok(to) => tracing::info!(to, "handed leadership over before stopping"),
                    Err(e) => tracing::warn!(error = %e, "could not hand leadership over; stopping anyway"),
                }
            }
            let _ = stop.send(());
            // Graceful shutdown waits for every connection to close, and raft
            // peers and agents keep theirs open: give them a moment, then go.
            // Nothing is lost: what was acknowledged is already on disk.
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        } => Ok(()),
    }
}

/// Names besides the role's that the certificate is valid for: the
/// address it listens on (when specific) and the host name, so plain TLS
/// tools can verify it too.
fn cert_names(addr: SocketAddr) -> Vec<String> {
    let mut names = vec!["localhost".to_string()];
    if !addr.ip().is_unspecified() {
        names.push(addr.ip().to_string());
    }
    if let Ok(h) = nix::unistd::gethostname() {
        if let Some(h) = h.to_str().filter(|h| !h.is_empty() && h.is_ascii()) {
            names.push(h.to_string());
        }
    }
    names
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
