//! `berth images`: which node holds which image.

use anyhow::Result;
use berth_proto::v1::ListImagesRequest;
use serde_json::json;

use crate::client::Client;
use crate::output::{bytes, table, Format};

pub async fn run(client: &Client, format: Format) -> Result<()> {
    let nodes = client
        .retry(|c| async move { c.images().list_images(ListImagesRequest {}).await })
        .await?
        .nodes;
    if format == Format::Json {
        let out: Vec<_> = nodes
            .iter()
            .flat_map(|n| {
                n.images.iter().map(move |i| json!({"node": n.node, "id": i.id, "tags": i.tags, "size_bytes": i.size_bytes, "created_at": i.created_at}))
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let mut rows = Vec::new();
    for n in &nodes {
        for i in &n.images {
            let short =
                i.id.trim_start_matches("sha256:")
                    .chars()
                    .take(12)
                    .collect::<String>();
            let tags = if i.tags.is_empty() {
                vec!["<none>".to_string()]
            } else {
                i.tags.clone()
            };
            for t in tags {
                rows.push(vec![n.node.clone(), t, short.clone(), bytes(i.size_bytes)]);
            }
        }
    }
    println!("{}", table(&["NODE", "IMAGE", "IMAGE ID", "SIZE"], rows));
    Ok(())
}
