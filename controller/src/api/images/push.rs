//! `berth image push`: every target fetches at once, as a chain.

use std::sync::Arc;

use berth_proto::internal::v1::FetchImageRequest;
use berth_proto::v1::PushProgress;
use tokio::sync::mpsc;

use super::plan::PushPlan;
use crate::core::{agent_client, Controller};

/// Runs every transfer of `plan` at once, forwarding progress to `out`. The
/// targets form a chain: each reads from the one before it while that one
/// is still receiving (falling back to the holders), so N targets cost about
/// one read of the holder and one transfer's time, not N.
pub async fn run(ctl: Arc<Controller>, plan: PushPlan, out: mpsc::Sender<PushProgress>) {
    let plan = Arc::new(plan);
    let mut tasks = Vec::new();
    let n = plan.targets.len();
    for (i, (node, addr)) in plan.targets.clone().into_iter().enumerate() {
        let (plan, out, ctl) = (plan.clone(), out.clone(), ctl.clone());
        let mut sources = Vec::new();
        if i > 0 {
            sources.push(plan.targets[i - 1].1.clone());
        }
        sources.extend(plan.sources.iter().cloned());
        let downstream = u32::from(i + 1 < n);
        tasks.push(tokio::spawn(async move {
            if let Err(e) = one(&ctl, &plan, &node, &addr, sources, downstream, &out).await {
                let _ = out
                    .send(PushProgress {
                        node,
                        progress: None,
                        error: e,
                    })
                    .await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn one(
    ctl: &Controller,
    plan: &PushPlan,
    node: &str,
    addr: &str,
    sources: Vec<String>,
    downstream: u32,
    out: &mpsc::Sender<PushProgress>,
) -> std::result::Result<(), String> {
    let mut client = agent_client(&ctl.tls, node, addr)
        .await
        .map_err(|e| e.to_string())?;
    let mut progress = client
        .fetch_image(FetchImageRequest {
            image: plan.image.clone(),
            sources,
            image_size: plan.size,
            downstream,
        })
        .await
        .map_err(|e| e.message().to_string())?
        .into_inner();
    loop {
        match progress.message().await {
            Ok(Some(p)) => {
                let _ = out
                    .send(PushProgress {
                        node: node.to_string(),
                        progress: Some(p),
                        error: String::new(),
                    })
                    .await;
            }
            Ok(None) => {
                // The push ends once the image table has it on every
                // target: a `berth run` right after lands anywhere.
                ctl.image_seen(node, &plan.image).await;
                return Ok(());
            }
            Err(e) => return Err(e.message().to_string()),
        }
    }
}
