//! `berth exec [-i] [-t] JOB CMD...`: `docker exec` on whichever host the
//! job runs, through the controller. With `-t` this terminal goes raw, so
//! Ctrl-C, arrows and the like reach the command's own terminal; window
//! size changes follow. The exit code is the command's.

use std::io::{IsTerminal, Read, Write};

use anyhow::{bail, Result};
use berth_proto::v1::{exec_input, exec_output, ExecInput, ExecStart, TerminalSize};

use tokio::sync::mpsc;

use crate::client::{status_message, Client};

#[derive(clap::Args)]
#[command(trailing_var_arg = true)]
pub struct Args {
    /// Keep stdin open and send it to the command.
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a terminal for the command (needs one here).
    #[arg(short, long)]
    tty: bool,
    /// Set an environment variable: KEY=VALUE.
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    workdir: Option<String>,
    /// User (name or uid[:gid]) to run as.
    #[arg(short, long)]
    user: Option<String>,
    /// Job id, id prefix or name.
    job: String,
    /// The command and its arguments.
    #[arg(required = true)]
    command: Vec<String>,
}

/// Raw mode for as long as it lives.
struct Raw;

impl Raw {
    fn enter() -> Result<Raw> {
        crossterm::terminal::enable_raw_mode()?;
        Ok(Raw)
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

fn size() -> (u32, u32) {
    crossterm::terminal::size().map_or((0, 0), |(cols, rows)| (u32::from(rows), u32::from(cols)))
}

pub async fn run(client: &Client, args: Args) -> Result<i32> {
    check_terminal(args.tty)?;
    let start = ExecStart {
        job: args.job.clone(),
        command: args.command.clone(),
        tty: args.tty,
        stdin: args.interactive,
        env: args.env.clone(),
        workdir: args.workdir.clone().unwrap_or_default(),
        user: args.user.clone().unwrap_or_default(),
        ..Default::default()
    };
    session(client, start).await
}

/// `-t` needs a terminal here, as docker says.
pub fn check_terminal(tty: bool) -> Result<()> {
    if tty && !std::io::stdin().is_terminal() {
        bail!("the input device is not a terminal: drop -t, or run berth from one");
    }
    Ok(())
}

/// An exec (or, with `start.attach`, an attach to the job's own process):
/// this terminal raw while it lasts, stdin and resizes sent, output
/// written; returns the exit code.
pub async fn session(client: &Client, mut start: ExecStart) -> Result<i32> {
    (start.rows, start.cols) = if start.tty { size() } else { (0, 0) };
    let (tty, interactive) = (start.tty, start.stdin);
    let (tx, rx) = mpsc::channel::<ExecInput>(16);
    tx.send(ExecInput {
        kind: Some(exec_input::Kind::Start(start)),
    })
    .await?;
    let mut output = client
        .jobs()
        .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(status_message)?
        .into_inner();
    // Started: now the terminal is the command's.
    let raw = if tty { Some(Raw::enter()?) } else { None };
    if interactive {
        // Its own thread, not tokio's blocking pool: a read of stdin cannot
        // be cancelled, and the runtime would wait for it at exit.
        let tx = tx.clone();
        std::thread::spawn(move || pump_stdin(tx));
    }
    if tty {
        tokio::spawn(follow_resizes(tx.clone()));
    }
    let mut code = None;
    loop {
        let msg = match output.message().await {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(e) => {
                drop(raw);
                return Err(status_message(e));
            }
        };
        match msg.kind {
            Some(exec_output::Kind::Stdout(d)) => {
                let mut out = std::io::stdout().lock();
                out.write_all(&d)?;
                out.flush()?;
            }
            Some(exec_output::Kind::Stderr(d)) => {
                let mut err = std::io::stderr().lock();
                err.write_all(&d)?;
                err.flush()?;
            }
            Some(exec_output::Kind::ExitCode(c)) => code = Some(c),
            None => {}
        }
    }
    drop(raw);
    match code {
        Some(c) => Ok(c),
        None => bail!("the exec ended without an exit code (its host or the controller went away)"),
    }
}

/// Sends this process's stdin as it comes; end-of-file closes the
/// command's stdin.
fn pump_stdin(tx: mpsc::Sender<ExecInput>) {
    let mut stdin = std::io::stdin().lock();
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let kind = match stdin.read(&mut buf) {
            Ok(0) | Err(_) => exec_input::Kind::CloseStdin(true),
            Ok(n) => exec_input::Kind::Stdin(buf[..n].to_vec()),
        };
        let last = matches!(kind, exec_input::Kind::CloseStdin(_));
        if tx.blocking_send(ExecInput { kind: Some(kind) }).is_err() || last {
            return;
        }
    }
}

/// Window size changes (SIGWINCH), sent on.
async fn follow_resizes(tx: mpsc::Sender<ExecInput>) {
    let Ok(mut winch) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
    else {
        return;
    };
    while winch.recv().await.is_some() {
        let (rows, cols) = size();
        let resize = exec_input::Kind::Resize(TerminalSize { rows, cols });
        if tx.send(ExecInput { kind: Some(resize) }).await.is_err() {
            return;
        }
    }
}
