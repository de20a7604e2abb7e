//! The dashboard page, rendered on the server: each host's GPUs as a heat
//! map (utilisation as colour, the job and user holding each, foreign
//! processes), the queue with `explain`'s reasons, running and recent
//! jobs, and GPU-hours per user over the last two weeks.

use std::fmt::Write as _;

use berth_proto::web::Viewer;

use super::chart;
use super::html::{document, esc};
use crate::core::{convert, Controller};
use crate::leader::Leader;
use crate::state::usage::{gpu_ms_by_user_day, DAY_MS};
use crate::state::{JobRecord, JobState};

/// Queued jobs whose reasons are worked out per page (each is a dry run).
const EXPLAINED: usize = 20;
/// Finished jobs listed.
const RECENT: usize = 20;
/// Days in the usage chart.
const DAYS: i64 = 14;

/// The page around a live part: who is signed in, and the part the
/// script refreshes.
pub fn whole(viewer: &Viewer, title: &str, live: &str) -> String {
    let body = format!(
        "<header><a href=\"/\" class=\"brand\">Berth</a>\
         <span id=\"status\">live</span>\
         <span class=\"who\">{} ({}) · <a href=\"/logout\">sign out</a></span></header>\
         <main id=\"live\">{live}</main>",
        esc(&viewer.name),
        esc(&viewer.role)
    );
    document(title, &body, true)
}

/// What the page shows now (the script fetches this alone to refresh).
pub fn live(ctl: &Controller, leader: &Leader) -> String {
    let now = convert::now_ms();
    let leading = ctl.is_leader();
    let (hosts, queued, jobs, chart) = {
        let inner = ctl.shared.lock();
        let s = &inner.state;
        let hosts = heat_map(ctl, &inner, leading);
        let mut queued: Vec<&JobRecord> = s.queue.iter().filter_map(|id| s.jobs.get(id)).collect();
        queued.sort_by_key(|j| j.seq);
        let queued: Vec<JobRecord> = queued.into_iter().cloned().collect();
        let mut live: Vec<&JobRecord> = s
            .jobs
            .values()
            .filter(|j| j.state.holds_resources())
            .collect();
        live.sort_by_key(|j| std::cmp::Reverse(j.started_at_ms));
        let mut done: Vec<&JobRecord> = s.jobs.values().filter(|j| j.state.is_finished()).collect();
        done.sort_by_key(|j| std::cmp::Reverse(j.finished_at_ms));
        let jobs: Vec<JobRecord> = live
            .into_iter()
            .chain(done.into_iter().take(RECENT))
            .cloned()
            .collect();
        let chart = usage_chart(s, now);
        (hosts, queued, jobs, chart)
    };
    let mut out = String::new();
    if !leading {
        out += "<p class=\"note\">This controller is not the leader: GPU figures and the queue's reasons are on the leader's dashboard.</p>";
    }
    out += &hosts;
    out += &queue_table(leader, &queued, leading, now);
    out += &jobs_table(&jobs, now);
    out += &chart;
    out
}

fn heat_map(ctl: &Controller, inner: &crate::core::machine::Inner, leading: bool) -> String {
    let s = &inner.state;
    let mut out = String::from("<section><h2>GPUs</h2><div class=\"hosts\">");
    for n in s.nodes.values() {
        let t = inner.telemetry.get(&n.name);
        let up = ctl.reported_recently(t);
        let status = match (up, s.cordons.contains_key(&n.name)) {
            (false, _) if !leading => "status unknown here",
            (false, _) => "down",
            (true, true) => "cordoned",
            (true, false) => "ready",
        };
        let _ = write!(
            out,
            "<div class=\"host {}\" data-node=\"{}\"><h3>{} <small>{status}</small></h3><div class=\"gpus\">",
            if up { "up" } else { "down" },
            esc(&n.name),
            esc(&n.name)
        );
        for inv in &n.gpus {
            let g = t.and_then(|t| t.report.gpus.iter().find(|g| g.uuid == inv.uuid));
            let util = g.map_or(0, |g| g.utilization_percent);
            let used = g.map_or(0, |g| g.memory_used_bytes);
            let holders: Vec<&JobRecord> = s.gpu_jobs(&inv.uuid).collect();
            let foreign: Vec<String> = g
                .map(|g| {
                    g.foreign_processes
                        .iter()
                        .map(|p| format!("{} {}", p.pid, p.name))
                        .collect()
                })
                .unwrap_or_default();
            let class = if !foreign.is_empty() {
                "gpu foreign"
            } else if holders.is_empty() {
                "gpu free"
            } else {
                "gpu held"
            };
            let who = if holders.is_empty() && foreign.is_empty() {
                "<span class=\"free\">free</span>".to_string()
            } else {
                holders
                    .iter()
                    .map(|j| {
                        format!(
                            "<a href=\"/jobs/{}\">{}</a> <span class=\"user\">{}</span>",
                            esc(&j.id),
                            esc(&j.name),
                            esc(&j.spec.user)
                        )
                    })
                    .chain(
                        foreign
                            .iter()
                            .map(|f| format!("<span class=\"foreign\">foreign: {}</span>", esc(f))),
                    )
                    .collect::<Vec<_>>()
                    .join("<br>")
            };
            let _ = write!(
                out,
                "<div class=\"{class} u{}\" title=\"{} · {} · {}% · {} of {} GiB\">\
                 <div class=\"idx\">GPU {} <b>{util}%</b></div><div class=\"mem\">{} / {} GiB</div><div class=\"who\">{who}</div></div>",
                (util / 10).min(9),
                esc(&inv.model),
                esc(&inv.uuid),
                util,
                used >> 30,
                inv.memory_total_bytes >> 30,
                inv.index,
                used >> 30,
                inv.memory_total_bytes >> 30,
            );
        }
        out += "</div></div>";
    }
    if s.nodes.is_empty() {
        out += "<p class=\"note\">No hosts yet: start an agent (docs/operations.md).</p>";
    }
    out += "</div></section>";
    out
}

fn queue_table(leader: &Leader, queued: &[JobRecord], leading: bool, now: i64) -> String {
    let mut out = format!(
        "<section><h2>Queue <small>{} waiting</small></h2>",
        queued.len()
    );
    if queued.is_empty() {
        return out + "<p class=\"note\">Nothing waits.</p></section>";
    }
    out += "<table><thead><tr><th>Job</th><th>User</th><th>GPUs</th><th>Waiting</th><th>Why</th></tr></thead><tbody>";
    for (i, j) in queued.iter().enumerate() {
        let why = if leading && i < EXPLAINED {
            match leader.explain(&j.id) {
                Ok((_, e)) => {
                    let hosts: Vec<String> = e
                        .hosts
                        .iter()
                        .map(|(reason, hosts)| format!("{reason}: {}", hosts.len()))
                        .collect();
                    format!(
                        "{}{}",
                        esc(&e.summary),
                        if hosts.is_empty() {
                            String::new()
                        } else {
                            format!("<br><small>{}</small>", esc(&hosts.join("; ")))
                        }
                    )
                }
                Err(e) => esc(&e.to_string()),
            }
        } else {
            esc(&j.message)
        };
        let _ = write!(
            out,
            "<tr><td><a href=\"/jobs/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{why}</td></tr>",
            esc(&j.id),
            esc(&j.name),
            esc(&j.spec.user),
            gpus_text(j),
            ago(now - j.submitted_at_ms)
        );
    }
    out + "</tbody></table></section>"
}

fn jobs_table(jobs: &[JobRecord], now: i64) -> String {
    let mut out = String::from(
        "<section><h2>Jobs <small>running and recent</small></h2><table><thead><tr>\
         <th>Job</th><th>User</th><th>State</th><th>Host</th><th>GPUs</th><th>For</th><th>Message</th></tr></thead><tbody>",
    );
    for j in jobs {
        let since = match j.state {
            s if s.is_finished() => format!("ended {} ago", ago(now - j.finished_at_ms)),
            JobState::Running => ago(now - j.started_at_ms),
            _ => String::new(),
        };
        let exit = j.exit_code.map(|c| format!(" ({c})")).unwrap_or_default();
        let _ = write!(
            out,
            "<tr class=\"{}\"><td><a href=\"/jobs/{}\">{}</a></td><td>{}</td><td>{}{exit}</td><td>{}</td><td>{}</td><td>{since}</td><td>{}</td></tr>",
            j.state.word(),
            esc(&j.id),
            esc(&j.name),
            esc(&j.spec.user),
            j.state.word(),
            esc(j.node.as_deref().unwrap_or("")),
            gpus_text(j),
            esc(&j.message)
        );
    }
    if jobs.is_empty() {
        out += "<tr><td colspan=\"7\" class=\"note\">No jobs yet.</td></tr>";
    }
    out + "</tbody></table></section>"
}

fn usage_chart(s: &crate::state::State, now: i64) -> String {
    let today = now.div_euclid(DAY_MS) * DAY_MS;
    let since = today - (DAYS - 1) * DAY_MS;
    let by_user = gpu_ms_by_user_day(&s.usage, &s.live_runs(now), since);
    let days: Vec<i64> = (0..DAYS).map(|d| since + d * DAY_MS).collect();
    let series: Vec<(String, Vec<f64>)> = by_user
        .into_iter()
        .map(|(user, per_day)| {
            let hours = days
                .iter()
                .map(|d| per_day.get(d).copied().unwrap_or(0) as f64 / 3_600_000.0)
                .collect();
            (user, hours)
        })
        .collect();
    format!(
        "<section><h2>GPU-hours per user <small>last {DAYS} days, UTC (berth usage --by day)</small></h2>{}</section>",
        chart::stacked_days(&days, &series)
    )
}

fn gpus_text(j: &JobRecord) -> String {
    if crate::state::is_slice(&j.spec) {
        format!("{} GiB slice", j.spec.gpu_memory_bytes >> 30)
    } else if !j.gpus.is_empty() {
        j.gpus
            .iter()
            .map(|g| g.index.to_string())
            .collect::<Vec<_>>()
            .join(",")
    } else {
        (j.spec.gpus * j.spec.nodes.max(1)).to_string()
    }
}

fn ago(ms: i64) -> String {
    let s = (ms / 1000).max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        _ => format!("{}h", s / 3600),
    }
}
