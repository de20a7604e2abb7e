//! `berth`: docker-shaped commands for a whole cluster. Thin: parse, connect,
//! dispatch to one file per verb, print errors without stack traces.

mod client;
mod commands;
mod config;
mod output;
mod spec;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::Format;

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "Run GPU containers anywhere in a Berth cluster"
)]
struct Cli {
    /// Controller address(es), comma-separated; the leader among them is
    /// used. Default: the config file's, else 127.0.0.1:7450.
    #[arg(long, global = true, env = "BERTH_ADDR")]
    addr: Option<String>,
    /// Output format of listings: table or json. For `image save`, the
    /// archive to write (as `docker save -o FILE`).
    #[arg(long, short = 'o', global = true, value_name = "FORMAT")]
    output: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job (like docker run): attached by default, -d to detach.
    // Boxed: run takes far more options than any other command.
    Run(Box<commands::run::Args>),
    /// List jobs (running and queued; -a for all).
    Ps(commands::ps::Args),
    /// Print a job's output.
    Logs(commands::logs::Args),
    /// Submit the jobs of a TOML file (each with berth run's options).
    Submit(commands::submit::Args),
    /// Run a command in a running job's container (-it for a shell).
    Exec(commands::exec::Args),
    /// Copy files between a job's container and this machine (as docker cp).
    Cp(commands::cp::Args),
    /// Make an image of a job's container (as docker commit).
    Commit(commands::commit::Args),
    /// Build an image from a Dockerfile on a host of the cluster (as docker build).
    Build(commands::build::Args),
    /// Stop jobs (queued ones are cancelled, running ones stopped).
    Stop(commands::stop::Args),
    /// Change a live job's memory/CPU limits or restart policy (as docker update).
    Update(commands::update::Args),
    /// Wait for a job to finish; prints its exit code and exits with it.
    Wait(commands::wait::Args),
    /// Show a job in full, as JSON.
    Inspect(commands::inspect::Args),
    /// Why a queued job waits: reasons per host count, reservation, quota.
    Explain(commands::explain::Args),
    /// Per-user GPU quotas.
    #[command(subcommand)]
    Quota(commands::quota::Command),
    /// List nodes, one row per GPU.
    Nodes(commands::nodes::Args),
    /// Print a link to the leader's web dashboard that signs you in.
    Dashboard,
    /// A live view of every host's GPUs, who holds them, users' shares and
    /// the queue (q quits; plain lines off a terminal).
    Top(commands::top::Args),
    /// Job and node events as they happen, or from a revision on.
    Events(commands::events::Args),
    /// GPU-hours and more per user, day, host, model or job (as sreport);
    /// -o json or -o csv for programs.
    Usage(commands::usage::Args),
    /// A host's maintenance (admins): cordon, uncordon, drain, rm.
    #[command(subcommand)]
    Node(commands::node::Command),
    /// List images on each node.
    Images,
    /// Images across hosts: push, save, load, rm, gc.
    #[command(subcommand)]
    Image(commands::image::Command),
    /// Run a single-node controller and agent on this machine's Docker daemon.
    Dev(commands::dev::Args),
    /// The replicated controllers: list members, roles and indexes.
    #[command(subcommand)]
    Controller(commands::controller::Command),
    /// Tokens: create (the secret is printed once), list, revoke. Admins.
    #[command(subcommand)]
    Token(commands::token::Command),
    /// The mount and privilege policy: show, or set from a TOML file (admins).
    #[command(subcommand)]
    Policy(commands::policy::Command),
    /// Who your token authenticates as.
    Whoami,
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut cli = Cli::parse();
    let format = match output(&mut cli) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("berth: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Dev(args) => commands::dev::run(args).await.map(|()| 0),
        command => dispatch(command, cli.addr.as_deref(), format).await,
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("berth: {e:#}");
            // 125 is docker's "the docker command itself failed".
            ExitCode::from(125)
        }
    }
}

/// `-o`: a listing format everywhere but `image save`, where it names the
/// archive file as it does for `docker save`.
fn output(cli: &mut Cli) -> anyhow::Result<Format> {
    use clap::ValueEnum;
    if let Command::Image(commands::image::Command::Save { output, .. }) = &mut cli.command {
        *output = cli.output.take().map(std::path::PathBuf::from);
        return Ok(Format::Table);
    }
    if let Command::Usage(args) = &mut cli.command {
        if cli.output.as_deref() == Some("csv") {
            args.csv = true;
            return Ok(Format::Table);
        }
    }
    match cli.output.as_deref() {
        None => Ok(Format::Table),
        Some(s) => Format::from_str(s, true)
            .map_err(|_| anyhow::anyhow!("-o/--output takes table or json, not {s:?}")),
    }
}

async fn dispatch(command: Command, addr: Option<&str>, format: Format) -> anyhow::Result<i32> {
    if let Command::Run(args) = command {
        let args = *args;
        // Malformed flags are refused before we even connect: nothing is created.
        let spec = commands::run::job_spec(&args)?;
        let settings = config::Settings::load(addr)?;
        let client = client::Client::connect(&settings).await?;
        return commands::run::run(&client, args, spec, format).await;
    }
    let settings = config::Settings::load(addr)?;
    if let Command::Controller(c) = command {
        return commands::controller::run(&settings, c, format)
            .await
            .map(|()| 0);
    }
    let client = client::Client::connect(&settings).await?;
    match command {
        Command::Run(_) => unreachable!("handled above"),
        Command::Ps(args) => commands::ps::run(&client, args, format).await.map(|()| 0),
        Command::Logs(args) => commands::logs::run(&client, args).await.map(|()| 0),
        Command::Exec(args) => commands::exec::run(&client, args).await,
        Command::Submit(args) => commands::submit::run(&client, args, format).await,
        Command::Cp(args) => commands::cp::run(&client, args).await.map(|()| 0),
        Command::Commit(args) => commands::commit::run(&client, args, format)
            .await
            .map(|()| 0),
        Command::Build(args) => commands::build::run(&client, args, format).await,
        Command::Stop(args) => commands::stop::run(&client, args, format).await.map(|()| 0),
        Command::Update(args) => commands::update::run(&client, args, format)
            .await
            .map(|()| 0),
        Command::Wait(args) => commands::wait::run(&client, args, format).await,
        Command::Inspect(args) => commands::inspect::run(&client, args).await.map(|()| 0),
        Command::Explain(args) => commands::explain::run(&client, args, format)
            .await
            .map(|()| 0),
        Command::Quota(cmd) => commands::quota::run(&client, cmd, format).await.map(|()| 0),
        Command::Nodes(args) => commands::nodes::run(&client, args, format)
            .await
            .map(|()| 0),
        Command::Events(args) => commands::events::run(&client, args, format)
            .await
            .map(|()| 0),
        Command::Dashboard => commands::dashboard::run(&client, &settings, format)
            .await
            .map(|()| 0),
        Command::Top(args) => commands::top::run(&client, args).await.map(|()| 0),
        Command::Usage(args) => commands::usage::run(&client, args, format)
            .await
            .map(|()| 0),
        Command::Node(cmd) => commands::node::run(&client, cmd, format).await.map(|()| 0),
        Command::Images => commands::images::run(&client, format).await.map(|()| 0),
        Command::Image(cmd) => commands::image::run(&client, cmd, format).await.map(|()| 0),
        Command::Token(cmd) => commands::token::run(&client, cmd, format).await.map(|()| 0),
        Command::Policy(cmd) => commands::policy::run(&client, cmd).await.map(|()| 0),
        Command::Whoami => commands::token::whoami(&client, format).await.map(|()| 0),
        Command::Dev(_) | Command::Controller(_) => unreachable!("handled before connecting"),
    }
}
