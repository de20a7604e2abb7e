//! `berth build -t NAME:TAG [-f Dockerfile] [--build-arg K=V] [--target T]
//! [--on HOST] CONTEXT`: `docker build` on a host of the cluster. The
//! context (less `.dockerignore`) is sent to the builder the controller
//! picks, its output streams here, and the image is then known to the
//! cluster: `berth run NAME:TAG` works at once, on any host.

mod context;

use std::collections::HashMap;
use std::io::{Read, Seek, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use berth_proto::image_ref::BUILD_DOCKERFILE as DOCKERFILE_IN_CONTEXT;
use berth_proto::v1::{build_progress, BuildOptions, BuildUpload};
use futures::StreamExt;
use serde_json::json;

use crate::client::{status_message, Client};
use crate::output::Format;

#[derive(clap::Args)]
pub struct Args {
    /// Name and tag of the image, NAME[:TAG].
    #[arg(short = 't', long = "tag")]
    tag: String,
    /// The Dockerfile (default: CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// A build argument, KEY=VALUE (KEY alone: this shell's value).
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    build_args: Vec<String>,
    /// Build up to this stage of a multi-stage Dockerfile.
    #[arg(long)]
    target: Option<String>,
    /// Build on this host (default: the controller picks one that holds
    /// the FROM images, else moves them there).
    #[arg(long = "on", value_name = "HOST")]
    on: Option<String>,
    /// The build context: a directory.
    context: PathBuf,
}

fn build_args(given: &[String]) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for a in given {
        match a.split_once('=') {
            Some(("", _)) => bail!("--build-arg {a:?}: expected KEY=VALUE"),
            Some((k, v)) => {
                out.insert(k.to_string(), v.to_string());
            }
            // docker: a bare KEY takes this shell's value, if it has one.
            None => {
                if let Ok(v) = std::env::var(a) {
                    out.insert(a.clone(), v);
                }
            }
        }
    }
    Ok(out)
}

pub async fn run(client: &Client, args: Args, format: Format) -> Result<i32> {
    if !args.context.is_dir() {
        bail!(
            "build context {}: not a directory (berth build takes a directory, as docker build PATH)",
            args.context.display()
        );
    }
    let file = args
        .file
        .clone()
        .unwrap_or_else(|| args.context.join("Dockerfile"));
    let dockerfile = std::fs::read_to_string(&file)
        .with_context(|| format!("reading the Dockerfile {}", file.display()))?;
    let mut spool = tempfile::tempfile().context("a temporary file for the context")?;
    let files = context::write(
        &args.context,
        &dockerfile,
        DOCKERFILE_IN_CONTEXT,
        &mut spool,
    )?;
    let size = spool.stream_position()?;
    spool.rewind()?;
    eprintln!(
        "berth: sending the build context: {files} file(s), {:.1} MiB",
        size as f64 / (1 << 20) as f64
    );
    let options = BuildOptions {
        tag: args.tag.clone(),
        dockerfile,
        build_args: build_args(&args.build_args)?,
        target: args.target.clone().unwrap_or_default(),
        node: args.on.clone().unwrap_or_default(),
        context_bytes: size,
    };
    let first = BuildUpload {
        options: Some(options),
        context: Vec::new(),
    };
    let chunks = futures::stream::unfold(spool, |mut f| async move {
        let mut buf = vec![0u8; 1 << 20];
        match f.read(&mut buf) {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((
                    BuildUpload {
                        options: None,
                        context: buf,
                    },
                    f,
                ))
            }
        }
    });
    let upload = futures::stream::iter([first]).chain(chunks);
    let mut progress = client
        .images()
        .build_image(upload)
        .await
        .map_err(status_message)?
        .into_inner();
    let mut node = String::new();
    while let Some(p) = progress.next().await {
        let Some(event) = p.map_err(status_message)?.event else {
            continue;
        };
        match event {
            build_progress::Event::Node(n) => {
                eprintln!("berth: building on {n}");
                node = n;
            }
            build_progress::Event::Moving(image) => {
                eprintln!("berth: moving {image} to {node} first (the build needs it there)");
            }
            build_progress::Event::Output(text) => {
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes())?;
                out.flush()?;
            }
            build_progress::Event::Result(r) => {
                if !r.error.is_empty() {
                    eprintln!("berth: the build failed on {node}: {}", r.error.trim());
                    return Ok(1);
                }
                if format == Format::Json {
                    println!(
                        "{}",
                        json!({"image_id": r.image_id, "tag": r.tag, "node": node})
                    );
                } else {
                    eprintln!("berth: built {} ({}) on {node}", r.tag, short(&r.image_id));
                }
                return Ok(0);
            }
        }
    }
    bail!("the build ended without a result: is the controller still up? (berth images shows whether {} exists)", args.tag)
}

fn short(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    &id[..id.len().min(12)]
}
