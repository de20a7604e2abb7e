//! `berth usage`: GPU-hours and the rest, per user, day, host, GPU model
//! or job, from the replicated usage ledger — like Slurm's `sreport`.
//! Running jobs count until now; forgotten jobs still count.

use anyhow::{bail, Context, Result};
use berth_proto::v1::{GetUsageRequest, GetUsageResponse, UsageGroup, UsageRow};
use serde_json::json;

use crate::client::Client;
use crate::output::{table, Format};

#[derive(clap::Args)]
pub struct Args {
    /// Only this user's usage.
    #[arg(long)]
    user: Option<String>,
    /// From this time: a date (2026-11-01, UTC), a time (2026-11-01T08:00:00Z),
    /// or how long ago (30d, 12h). Default: the beginning.
    #[arg(long)]
    since: Option<String>,
    /// Until this time (exclusive), in the same forms. Default: now.
    #[arg(long)]
    until: Option<String>,
    /// One row per user, UTC day, host, GPU model or job.
    #[arg(long, default_value = "user", value_parser = ["user", "day", "node", "model", "job"])]
    by: String,
    /// `-o csv`: comma-separated rows (set from the global -o).
    #[arg(skip)]
    pub csv: bool,
}

pub async fn run(client: &Client, args: Args, format: Format) -> Result<()> {
    let now = chrono::Utc::now().timestamp_millis();
    let since_ms = args
        .since
        .as_deref()
        .map(|s| when(s, now))
        .transpose()?
        .unwrap_or(0);
    let until_ms = args
        .until
        .as_deref()
        .map(|s| when(s, now))
        .transpose()?
        .unwrap_or(0);
    let group_by = match args.by.as_str() {
        "day" => UsageGroup::Day,
        "node" => UsageGroup::Node,
        "model" => UsageGroup::Model,
        "job" => UsageGroup::Job,
        _ => UsageGroup::User,
    };
    let req = GetUsageRequest {
        user: args.user.clone().unwrap_or_default(),
        since_ms,
        until_ms,
        group_by: group_by as i32,
    };
    let r = client
        .retry(|c| {
            let req = req.clone();
            async move { c.usage().get_usage(req).await }
        })
        .await?;
    if args.csv {
        print!("{}", csv(&args.by, &r.rows));
    } else if format == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&as_json(&args.by, since_ms, until_ms, &r))?
        );
    } else {
        print_table(&args.by, &r.rows);
    }
    Ok(())
}

/// A time as Unix ms: a UTC date, an RFC 3339 time, or a duration ago.
fn when(s: &str, now_ms: i64) -> Result<i64> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let t = d.and_hms_opt(0, 0, 0).context("midnight")?.and_utc();
        return Ok(t.timestamp_millis());
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(now_ms - d.as_millis() as i64);
    }
    bail!("{s:?} is not a date (2026-11-01), a time (2026-11-01T08:00:00Z) or a duration ago (30d)")
}

const HEADER: [&str; 6] = [
    "RUNS",
    "GPU-HOURS",
    "SLICE GiB-H",
    "CPU-HOURS",
    "MEM GiB-H",
    "WALL-HOURS",
];

fn print_table(by: &str, rows: &[UsageRow]) {
    // Three decimals: a short job (11 s is 0.003 h) is not shown as 0.
    let h = |s: f64| format!("{:.3}", s / 3600.0);
    let line = |r: &UsageRow| {
        vec![
            r.key.clone(),
            r.runs.to_string(),
            h(r.gpu_seconds),
            h(r.gpu_memory_gib_seconds),
            h(r.cpu_seconds),
            h(r.memory_gib_seconds),
            h(r.wall_seconds),
        ]
    };
    let mut lines: Vec<Vec<String>> = rows.iter().map(line).collect();
    if rows.len() > 1 {
        let total = rows.iter().fold(
            UsageRow {
                key: "TOTAL".into(),
                ..UsageRow::default()
            },
            |mut t, r| {
                t.runs += r.runs;
                t.gpu_seconds += r.gpu_seconds;
                t.gpu_memory_gib_seconds += r.gpu_memory_gib_seconds;
                t.cpu_seconds += r.cpu_seconds;
                t.memory_gib_seconds += r.memory_gib_seconds;
                t.wall_seconds += r.wall_seconds;
                t
            },
        );
        lines.push(line(&total));
    }
    let key = by.to_uppercase();
    let header: Vec<&str> = std::iter::once(key.as_str()).chain(HEADER).collect();
    println!("{}", table(&header, lines));
}

fn csv(by: &str, rows: &[UsageRow]) -> String {
    let mut out = format!(
        "{by},runs,gpu_seconds,gpu_memory_gib_seconds,cpu_seconds,memory_gib_seconds,wall_seconds\n"
    );
    for r in rows {
        // Keys are names, dates and ids; quote any that a reader would split.
        let key = if r.key.contains([',', '"', '\n']) {
            format!("\"{}\"", r.key.replace('"', "\"\""))
        } else {
            r.key.clone()
        };
        out += &format!(
            "{key},{},{:.3},{:.3},{:.3},{:.3},{:.3}\n",
            r.runs,
            r.gpu_seconds,
            r.gpu_memory_gib_seconds,
            r.cpu_seconds,
            r.memory_gib_seconds,
            r.wall_seconds
        );
    }
    out
}

fn as_json(by: &str, since_ms: i64, until_ms: i64, r: &GetUsageResponse) -> serde_json::Value {
    json!({
        "by": by,
        "since_ms": since_ms,
        "until_ms": until_ms,
        "counted_until_ms": r.now_ms,
        "detail_from_ms": r.detail_from_ms,
        "rows": r.rows.iter().map(|row| json!({
            "key": row.key,
            "runs": row.runs,
            "gpu_seconds": row.gpu_seconds,
            "gpu_hours": row.gpu_seconds / 3600.0,
            "gpu_memory_gib_seconds": row.gpu_memory_gib_seconds,
            "cpu_seconds": row.cpu_seconds,
            "memory_gib_seconds": row.memory_gib_seconds,
            "wall_seconds": row.wall_seconds,
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_dates_times_or_durations_ago() {
        assert_eq!(when("1970-01-02", 0).unwrap(), 86_400_000);
        assert_eq!(when("1970-01-01T00:00:01Z", 0).unwrap(), 1_000);
        assert_eq!(when("2h", 10_000_000).unwrap(), 10_000_000 - 7_200_000);
        assert!(when("last tuesday", 0)
            .unwrap_err()
            .to_string()
            .contains("is not a date"));
    }

    #[test]
    fn csv_quotes_keys_that_would_split() {
        let rows = [UsageRow {
            key: "a,b".into(),
            runs: 1,
            gpu_seconds: 2.0,
            ..Default::default()
        }];
        assert_eq!(
            csv("user", &rows).lines().nth(1).unwrap(),
            "\"a,b\",1,2.000,0.000,0.000,0.000,0.000"
        );
    }
}
