//! `berth top`: a live full-screen view of the cluster, like `nvitop` or
//! `gpustat` across every host: each GPU's utilisation, memory,
//! temperature and power with the job and user holding it (and foreign
//! processes), each user's share, and the queue. It refreshes when the
//! event stream says a job moved, and every `--delay` for the GPU figures,
//! which change without events. Off a terminal it prints plain lines.
//!
//! - `view`: the pure model (lines, sorting, filters, the plain text);
//! - `draw`: one ratatui frame.

mod draw;
mod view;

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Result;
use berth_proto::v1::{ListJobsRequest, ListNodesRequest, WatchRequest};
use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tokio::sync::mpsc;

use crate::client::Client;
use draw::Screen;
use view::{Filter, Snapshot, Sort};

#[derive(clap::Args)]
pub struct Args {
    /// Only this user's jobs and the GPUs they hold.
    #[arg(long)]
    user: Option<String>,
    /// Only this host's GPUs.
    #[arg(long)]
    host: Option<String>,
    /// Time between refreshes of the GPU figures (as top -d).
    #[arg(short = 'd', long = "delay", default_value = "2s")]
    delay: humantime::Duration,
    /// Stop after this many refreshes (as top -n).
    #[arg(short = 'n', long)]
    iterations: Option<u64>,
}

pub async fn run(client: &Client, args: Args) -> Result<()> {
    let filter = Filter {
        user: args.user.clone(),
        host: args.host.clone(),
    };
    let delay = (*args.delay).max(Duration::from_millis(200));
    if std::io::stdout().is_terminal() {
        live(client, filter, delay, args.iterations).await
    } else {
        plain(client, filter, delay, args.iterations).await
    }
}

async fn fetch(client: &Client) -> Result<Snapshot> {
    let nodes = client
        .retry(|c| async move { c.nodes().list_nodes(ListNodesRequest {}).await })
        .await?;
    let jobs = client.all_jobs(ListJobsRequest::default()).await?;
    Ok(Snapshot {
        nodes: nodes.nodes,
        jobs,
        revision: nodes.revision,
        at_ms: chrono::Utc::now().timestamp_millis(),
    })
}

/// Off a terminal: a block of plain lines every `delay`.
async fn plain(client: &Client, filter: Filter, delay: Duration, n: Option<u64>) -> Result<()> {
    let mut done = 0;
    loop {
        let s = fetch(client).await?;
        print!("{}", view::plain(&s, &filter, Sort::Host));
        done += 1;
        if n.is_some_and(|n| done >= n) {
            return Ok(());
        }
        tokio::time::sleep(delay).await;
    }
}

/// Pokes `tx` whenever a job or node event arrives after `revision`. Ends
/// quietly when the stream does: the periodic refresh still runs.
fn watch_events(client: &Client, revision: u64, tx: mpsc::Sender<()>) {
    let client = client.clone();
    tokio::spawn(async move {
        let Ok(stream) = client
            .events()
            .watch(WatchRequest {
                from_revision: revision,
                ..WatchRequest::default()
            })
            .await
        else {
            return;
        };
        let mut stream = stream.into_inner();
        while let Ok(Some(_)) = stream.message().await {
            // A full channel already has a refresh pending.
            let _ = tx.try_send(());
        }
    });
}

/// The full-screen view until `q`.
async fn live(client: &Client, filter: Filter, delay: Duration, n: Option<u64>) -> Result<()> {
    let mut snapshot = fetch(client).await?;
    let (poke, mut poked) = mpsc::channel(1);
    watch_events(client, snapshot.revision, poke);
    let (keys_tx, mut keys) = mpsc::channel::<KeyEvent>(16);
    // crossterm's read blocks: a thread of its own, ended with the process.
    std::thread::spawn(move || {
        while let Ok(ev) = crossterm::event::read() {
            if let Event::Key(k) = ev {
                if k.kind != KeyEventKind::Release && keys_tx.blocking_send(k).is_err() {
                    return;
                }
            }
        }
    });
    let mut terminal = ratatui::init();
    let mut screen = Screen {
        filter,
        ..Screen::default()
    };
    let mut refreshes = 1;
    let result = loop {
        if let Err(e) = terminal.draw(|f| draw::frame(f, &snapshot, &screen)) {
            break Err(e.into());
        }
        let refresh = tokio::select! {
            key = keys.recv() => match key {
                Some(k) => match on_key(&mut screen, k) {
                    Key::Quit => break Ok(()),
                    Key::Redraw => false,
                },
                None => break Ok(()),
            },
            _ = poked.recv() => {
                // Events come in bursts (a placement moves many jobs).
                tokio::time::sleep(Duration::from_millis(150)).await;
                true
            }
            () = tokio::time::sleep(delay) => true,
        };
        if refresh {
            match fetch(client).await {
                Ok(s) => {
                    snapshot = s;
                    screen.error = None;
                }
                Err(e) => screen.error = Some(format!("{e:#}")),
            }
            refreshes += 1;
            if n.is_some_and(|n| refreshes > n) {
                break Ok(());
            }
        }
    };
    ratatui::restore();
    result
}

enum Key {
    Quit,
    Redraw,
}

fn on_key(screen: &mut Screen, k: KeyEvent) -> Key {
    if k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL) {
        return Key::Quit;
    }
    if let Some((what, text)) = &mut screen.typing {
        match k.code {
            KeyCode::Enter => {
                let value = Some(text.trim().to_string()).filter(|t| !t.is_empty());
                if *what == "user" {
                    screen.filter.user = value;
                } else {
                    screen.filter.host = value;
                }
                screen.typing = None;
            }
            KeyCode::Esc => screen.typing = None,
            KeyCode::Backspace => {
                text.pop();
            }
            KeyCode::Char(c) => text.push(c),
            _ => {}
        }
        return Key::Redraw;
    }
    match k.code {
        KeyCode::Char('q') => return Key::Quit,
        KeyCode::Char('s') => screen.sort = Some(screen.sort.unwrap_or(Sort::Host).next()),
        KeyCode::Char('u') => screen.typing = Some(("user", String::new())),
        KeyCode::Char('h') => screen.typing = Some(("host", String::new())),
        KeyCode::Char('c') | KeyCode::Esc => screen.filter = Filter::default(),
        _ => {}
    }
    Key::Redraw
}
