//! `berth image ...`: the seeds' `docker save` / `scp` / `docker load`,
//! cluster-wide and without a registry.
//!
//! - `push`: host to host, agent to agent (and the progress view).
//! - `files`: `save` to and `load` from a file on this machine.
//! - `prune`: `rm` and `gc`.

mod files;
mod prune;
mod push;

use anyhow::Result;

use crate::client::Client;
use crate::output::Format;

pub use push::View;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Copy IMAGE to hosts that lack it (no registry: agent to agent).
    Push {
        image: String,
        /// Target hosts, comma-separated.
        #[arg(long, value_delimiter = ',', conflicts_with = "all")]
        to: Vec<String>,
        /// Every ready host that lacks it.
        #[arg(long)]
        all: bool,
    },
    /// Write IMAGE as a `docker save` archive on this machine, read from a
    /// host that has it.
    ///
    /// -o FILE names the archive (stdout when omitted and not a terminal).
    Save {
        image: String,
        /// Set from the global -o/--output (see `main`).
        #[arg(skip)]
        output: Option<std::path::PathBuf>,
        /// Read from this host (default: the best ready holder).
        #[arg(long)]
        from: Option<String>,
    },
    /// Load a `docker save` archive from this machine onto hosts.
    Load {
        /// Archive to read (stdin when omitted).
        #[arg(short, long)]
        input: Option<std::path::PathBuf>,
        /// Hosts, comma-separated: loaded on the first, then pushed to the
        /// rest. Omitted: one ready host with room for it, the least busy
        /// (as `docker load` needs none); the answer says which.
        #[arg(long, value_delimiter = ',')]
        to: Vec<String>,
    },
    /// Remove IMAGE from hosts (every host holding it by default).
    Rm {
        image: String,
        /// Only on these hosts, comma-separated.
        #[arg(long, value_delimiter = ',')]
        on: Vec<String>,
        /// Also when stopped containers use it (docker rmi -f).
        #[arg(short, long)]
        force: bool,
    },
    /// Remove least-recently-used images that no live or queued job needs
    /// and no container uses.
    Gc {
        /// Only on these hosts, comma-separated (default: every ready host).
        #[arg(long, value_delimiter = ',')]
        on: Vec<String>,
        /// Stop once this % of the disk is free (default: remove every such image).
        #[arg(long, value_parser = clap::value_parser!(u32).range(0..=100))]
        target: Option<u32>,
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
}

pub async fn run(client: &Client, cmd: Command, format: Format) -> Result<()> {
    match cmd {
        Command::Push { image, to, all } => push::run(client, image, to, all, format).await,
        Command::Save {
            image,
            output,
            from,
        } => files::save(client, &image, output, from).await,
        Command::Load { input, to } => files::load(client, input, to, format).await,
        Command::Rm { image, on, force } => prune::rm(client, &image, on, force, format).await,
        Command::Gc {
            on,
            target,
            dry_run,
        } => prune::gc(client, on, target.unwrap_or(0), dry_run, format).await,
    }
}
