//! `berth image push IMAGE --to HOST[,HOST]|--all`: copies an image from a
//! host that has it to others, agent to agent. Progress bars with rate and
//! ETA on a terminal; plain lines otherwise (CI logs, pipes). The same view
//! shows a pulling job's transfer in `berth run`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use berth_proto::v1::{PushImageRequest, PushProgress};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::json;

use crate::client::{status_message, Client};
use crate::output::{bytes, Format};

pub async fn run(
    client: &Client,
    image: String,
    to: Vec<String>,
    all: bool,
    format: Format,
) -> Result<()> {
    let mut stream = client
        .images()
        .push_image(PushImageRequest {
            image: image.clone(),
            to,
            all,
        })
        .await
        .map_err(status_message)?
        .into_inner();
    let mut view = View::new(format);
    let mut outcome: BTreeMap<String, std::result::Result<PushProgress, String>> = BTreeMap::new();
    while let Some(p) = stream.message().await.map_err(status_message)? {
        view.show(&p);
        let entry = outcome
            .entry(p.node.clone())
            .or_insert(Ok(PushProgress::default()));
        *entry = if p.error.is_empty() {
            Ok(p)
        } else {
            Err(p.error)
        };
    }
    view.finish();
    let failed: Vec<String> = outcome
        .iter()
        .filter_map(|(n, r)| r.as_ref().err().map(|e| format!("{n}: {e}")))
        .collect();
    if format == Format::Json {
        let out: Vec<_> = outcome
            .iter()
            .map(|(node, r)| match r {
                Ok(p) => {
                    let pr = p.progress.clone().unwrap_or_default();
                    json!({"node": node, "ok": true, "image_id": pr.image_id, "bytes": pr.bytes_done, "wire_bytes": pr.wire_bytes, "skipped_bytes": pr.skipped_bytes, "source": pr.source})
                }
                Err(e) => json!({"node": node, "ok": false, "error": e}),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if outcome.is_empty() {
        eprintln!("berth: every target already has {image}");
    }
    if !failed.is_empty() {
        bail!(
            "{} of {} transfers failed: {}",
            failed.len(),
            outcome.len(),
            failed.join("; ")
        );
    }
    Ok(())
}

/// Bars on a terminal, a line per node every few seconds otherwise.
pub struct View {
    bars: Option<(MultiProgress, BTreeMap<String, ProgressBar>)>,
    last_line: BTreeMap<String, Instant>,
    json: bool,
}

impl View {
    pub fn new(format: Format) -> View {
        let tty = std::io::stderr().is_terminal() && format != Format::Json;
        View {
            bars: tty.then(|| (MultiProgress::new(), BTreeMap::new())),
            last_line: BTreeMap::new(),
            json: format == Format::Json,
        }
    }

    pub fn show(&mut self, p: &PushProgress) {
        let pr = p.progress.clone().unwrap_or_default();
        if let Some((multi, bars)) = &mut self.bars {
            let bar = bars.entry(p.node.clone()).or_insert_with(|| {
                let b = multi.add(ProgressBar::new(pr.bytes_total.max(1)));
                b.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>16} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                b.set_prefix(p.node.clone());
                b
            });
            bar.set_length(pr.bytes_total.max(pr.bytes_done).max(1));
            bar.set_position(pr.bytes_done);
            if !p.error.is_empty() {
                bar.abandon_with_message(format!("failed: {}", p.error));
            } else if pr.done {
                bar.finish_with_message(format!(
                    "loaded {} ({} on the wire{})",
                    short(&pr.image_id),
                    bytes(pr.wire_bytes),
                    skipped(pr.skipped_bytes)
                ));
            } else if !pr.message.is_empty() {
                bar.set_message(pr.message.clone());
            }
            return;
        }
        if self.json {
            return;
        }
        let due = self
            .last_line
            .get(&p.node)
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(2));
        if !p.error.is_empty() {
            eprintln!("{}: failed: {}", p.node, p.error);
        } else if pr.done {
            eprintln!(
                "{}: loaded {} ({}, {} on the wire{}, from {})",
                p.node,
                short(&pr.image_id),
                bytes(pr.bytes_done),
                bytes(pr.wire_bytes),
                skipped(pr.skipped_bytes),
                pr.source
            );
        } else if !pr.message.is_empty() {
            eprintln!("{}: {}", p.node, pr.message);
        } else if due {
            eprintln!(
                "{}: {} of ~{}",
                p.node,
                bytes(pr.bytes_done),
                bytes(pr.bytes_total)
            );
            self.last_line.insert(p.node.clone(), Instant::now());
        }
    }

    pub fn finish(&mut self) {
        if let Some((multi, _)) = &self.bars {
            let _ = multi.clear();
        }
    }
}

fn skipped(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!("; {} of layers it had, not sent", bytes(n))
    }
}

/// An image id as docker shows it: 12 hex digits.
pub(super) fn short(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..12.min(hex.len())]
}
