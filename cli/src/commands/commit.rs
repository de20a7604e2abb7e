//! `berth commit JOB REPOSITORY[:TAG]`: `docker commit` of the job's
//! container on its host. The image is then on that host (`berth images`),
//! and jobs can run it anywhere: it is moved to the host they land on.

use anyhow::Result;
use berth_proto::v1::CommitRequest;
use serde_json::json;

use crate::client::{status_message, Client};
use crate::output::Format;

#[derive(clap::Args)]
pub struct Args {
    /// Commit message.
    #[arg(short, long)]
    message: Option<String>,
    /// Do not pause the container while it is written (docker commit
    /// --pause=false): faster for a busy job, but the image may catch files
    /// half-written.
    #[arg(long)]
    no_pause: bool,
    /// Job id, id prefix or name.
    job: String,
    /// REPOSITORY[:TAG] (`:latest` when no tag).
    image: String,
}

pub async fn run(client: &Client, args: Args, format: Format) -> Result<()> {
    let r = client
        .jobs()
        .commit(CommitRequest {
            job: args.job.clone(),
            image: args.image.clone(),
            comment: args.message.unwrap_or_default(),
            no_pause: args.no_pause,
        })
        .await
        .map_err(status_message)?
        .into_inner();
    if format == Format::Json {
        let v = json!({"image": args.image, "image_id": r.image_id, "node": r.node});
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("{}", r.image_id);
        eprintln!("berth: {} is on {}", args.image, r.node);
    }
    Ok(())
}
