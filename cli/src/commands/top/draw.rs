//! Drawing one frame of `berth top` with ratatui: a status line, the GPUs
//! with who holds them, then each user's share beside the queue.

use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::view::{self, bar, mem_percent, mem_text, Filter, Snapshot, Sort};

/// What the screen shows besides the snapshot.
#[derive(Debug, Default)]
pub struct Screen {
    pub sort: Option<Sort>,
    pub filter: Filter,
    /// A filter being typed: ("user" or "host", text so far).
    pub typing: Option<(&'static str, String)>,
    /// Why the last refresh failed, if it did.
    pub error: Option<String>,
}

pub fn frame(f: &mut Frame, s: &Snapshot, screen: &Screen) {
    let sort = screen.sort.unwrap_or(Sort::Host);
    let gpus = view::gpu_lines(s, &screen.filter, sort);
    let users = view::users(s);
    let queue = view::queue(s, &screen.filter);
    // The GPUs as tall as they need; what is left goes to users and queue.
    let tall = (gpus.len() as u16).saturating_add(3);
    let [status, main, lower, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Max(tall),
        Constraint::Min(4),
        Constraint::Length(1),
    ])
    .areas(f.area());

    let up = s
        .nodes
        .iter()
        .filter(|n| n.status == berth_proto::v1::NodeStatus::Ready as i32)
        .count();
    let all_gpus: usize = s.nodes.iter().map(|n| n.gpus.len()).sum();
    let held = view::gpu_lines(s, &Filter::default(), Sort::Host)
        .iter()
        .filter(|l| !l.jobs.is_empty())
        .count();
    let running = users.iter().map(|u| u.running).sum::<u32>();
    let queued = users.iter().map(|u| u.queued).sum::<u32>();
    let mut line = vec![
        Span::styled("berth top", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!(
            "  {} hosts ({up} up)  {all_gpus} GPUs ({held} held)  {running} running  {queued} queued  sort: {}  filter: {}",
            s.nodes.len(),
            sort.word(),
            screen.filter.describe()
        )),
    ];
    if let Some(e) = &screen.error {
        line.push(Span::styled(
            format!("  ! {e}"),
            Style::new().fg(Color::Red),
        ));
    }
    f.render_widget(Paragraph::new(Line::from(line)), status);

    let rows = gpus.iter().map(|l| {
        let who = if !l.jobs.is_empty() {
            Cell::from(l.jobs.join(", "))
        } else if !l.foreign.is_empty() {
            Cell::from(format!("foreign: {}", l.foreign.join(", ")))
                .style(Style::new().fg(Color::Red))
        } else {
            Cell::from("free").style(Style::new().fg(Color::DarkGray))
        };
        let host = if l.up {
            Cell::from(l.host.clone())
        } else {
            Cell::from(format!("{} (down)", l.host)).style(Style::new().fg(Color::Red))
        };
        Row::new(vec![
            host,
            Cell::from(l.index.to_string()),
            Cell::from(l.model.clone()),
            Cell::from(format!(
                "{} {:>3}%",
                bar(l.util_percent, 10),
                l.util_percent
            ))
            .style(load(l.util_percent)),
            Cell::from(format!("{} {}", bar(mem_percent(l), 10), mem_text(l)))
                .style(load(mem_percent(l))),
            Cell::from(format!("{}C", l.temp_c)),
            Cell::from(format!("{}W", l.power_w)),
            who,
            Cell::from(l.users.join(", ")),
        ])
    });
    // As wide as the longest host name (within reason): a cut name is a
    // different host to whoever reads it.
    let host_w = gpus
        .iter()
        .map(|l| l.host.chars().count() + if l.up { 0 } else { 7 })
        .max()
        .unwrap_or(4)
        .clamp(4, 40) as u16;
    let model_w = gpus
        .iter()
        .map(|l| l.model.chars().count())
        .max()
        .unwrap_or(5)
        .clamp(5, 28) as u16;
    let table = Table::new(
        rows,
        [
            Constraint::Length(host_w),
            Constraint::Length(3),
            Constraint::Length(model_w),
            Constraint::Length(16),
            Constraint::Length(20),
            Constraint::Length(5),
            Constraint::Length(6),
            Constraint::Min(20),
            Constraint::Length(12),
        ],
    )
    .header(header(&[
        "HOST", "GPU", "MODEL", "UTIL", "MEMORY", "TEMP", "POWER", "JOB", "USER",
    ]))
    .block(Block::bordered().title(" GPUs "));
    f.render_widget(table, main);

    let [left, right] =
        Layout::horizontal([Constraint::Length(46), Constraint::Min(30)]).areas(lower);
    let rows = users.iter().map(|u| {
        Row::new(vec![
            u.user.clone(),
            format!("{:.2}", u.gpus),
            format!("{:.0}%", u.share * 100.0),
            u.running.to_string(),
            u.queued.to_string(),
        ])
    });
    let widths = [
        Constraint::Length(14),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(8),
        Constraint::Length(7),
    ];
    f.render_widget(
        Table::new(rows, widths)
            .header(header(&["USER", "GPUS", "SHARE", "RUNNING", "QUEUED"]))
            .block(Block::bordered().title(" Users ")),
        left,
    );
    let rows = queue.iter().map(|q| {
        Row::new(vec![
            q.id.clone(),
            q.name.clone(),
            q.user.clone(),
            q.gpus.clone(),
            format!("{}s", q.waiting_s),
            q.message.clone(),
        ])
    });
    let widths = [
        Constraint::Length(12),
        Constraint::Length(16),
        Constraint::Length(10),
        Constraint::Length(9),
        Constraint::Length(7),
        Constraint::Min(10),
    ];
    f.render_widget(
        Table::new(rows, widths)
            .header(header(&["ID", "NAME", "USER", "GPUS", "WAITING", "WHY"]))
            .block(Block::bordered().title(" Queue ")),
        right,
    );

    let help_line = match &screen.typing {
        Some((what, text)) => {
            format!("filter by {what}: {text}_   (Enter: apply, Esc: cancel, empty: any)")
        }
        None => "q quit   s sort   u filter user   h filter host   c clear filters".into(),
    };
    f.render_widget(
        Paragraph::new(help_line).style(Style::new().fg(Color::DarkGray)),
        help,
    );
}

fn header(cols: &[&'static str]) -> Row<'static> {
    Row::new(cols.to_vec()).style(Style::new().add_modifier(Modifier::BOLD))
}

/// Green when idle, yellow when busy, red when nearly full.
fn load(percent: u32) -> Style {
    match percent {
        0..=49 => Style::new().fg(Color::Green),
        50..=89 => Style::new().fg(Color::Yellow),
        _ => Style::new().fg(Color::Red),
    }
}
