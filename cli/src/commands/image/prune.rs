//! `berth image rm` and `berth image gc`.

use anyhow::{bail, Result};
use berth_proto::v1::{GcImagesRequest, RemoveImageRequest};
use comfy_table::Table;
use serde_json::json;

use crate::client::{status_message, Client};
use crate::output::{bytes, Format};

pub async fn rm(
    client: &Client,
    image: &str,
    on: Vec<String>,
    force: bool,
    format: Format,
) -> Result<()> {
    let nodes = client
        .images()
        .remove_image(RemoveImageRequest {
            image: image.to_string(),
            nodes: on,
            force,
        })
        .await
        .map_err(status_message)?
        .into_inner()
        .nodes;
    if format == Format::Json {
        let v: Vec<_> = nodes
            .iter()
            .map(|n| json!({"node": n.node, "ok": n.error.is_empty(), "error": n.error}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for n in &nodes {
            if n.error.is_empty() {
                eprintln!("berth: removed {image} from {}", n.node);
            } else {
                eprintln!("berth: {}: {}", n.node, n.error);
            }
        }
    }
    let failed = nodes.iter().filter(|n| !n.error.is_empty()).count();
    if failed > 0 {
        bail!("{failed} of {} removals failed", nodes.len());
    }
    Ok(())
}

pub async fn gc(
    client: &Client,
    on: Vec<String>,
    target_free_percent: u32,
    dry_run: bool,
    format: Format,
) -> Result<()> {
    let nodes = client
        .images()
        .gc_images(GcImagesRequest {
            nodes: on,
            target_free_percent,
            dry_run,
        })
        .await
        .map_err(status_message)?
        .into_inner()
        .nodes;
    if format == Format::Json {
        let v: Vec<_> = nodes
            .iter()
            .map(|n| {
                let r = n.result.clone().unwrap_or_default();
                json!({
                    "node": n.node,
                    "error": n.error,
                    "dry_run": dry_run,
                    "removed": r.removed.iter().map(|i| json!({"id": i.id, "tags": i.tags, "size_bytes": i.size_bytes})).collect::<Vec<_>>(),
                    "freed_bytes": r.freed_bytes,
                    "free_bytes_after": r.free_bytes_after,
                    "kept_needed": r.kept_needed,
                    "kept_in_use": r.kept_in_use,
                    "errors": r.errors,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    let verb = if dry_run { "WOULD REMOVE" } else { "REMOVED" };
    table.set_header(vec![
        "NODE",
        verb,
        "FREED",
        "FREE AFTER",
        "KEPT (JOBS/CONTAINERS)",
    ]);
    for n in &nodes {
        let Some(r) = &n.result else {
            table.add_row(vec![n.node.clone(), format!("error: {}", n.error)]);
            continue;
        };
        let names: Vec<String> = r
            .removed
            .iter()
            .map(|i| i.tags.first().cloned().unwrap_or_else(|| i.id.clone()))
            .collect();
        table.add_row(vec![
            n.node.clone(),
            if names.is_empty() {
                "-".into()
            } else {
                names.join(", ")
            },
            bytes(r.freed_bytes),
            bytes(r.free_bytes_after),
            format!("{}/{}", r.kept_needed, r.kept_in_use),
        ]);
        for e in &r.errors {
            eprintln!("berth: {}: {e}", n.node);
        }
    }
    println!("{table}");
    Ok(())
}
