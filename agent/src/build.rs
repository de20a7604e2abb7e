//! `berth build` on this host: the context the controller forwards is
//! spooled to a file (the daemon reads it once, and the Dockerfile in it is
//! checked against the one the controller vetted first), then built by the
//! daemon, its output streamed back line by line.

use std::io::{Read, Write};
use std::sync::Arc;

use berth_proto::v1::{build_progress, BuildOptions, BuildProgress, BuildResult, BuildUpload};
use futures::{Stream, StreamExt};
use tonic::Status;

use crate::agent::Agent;
use crate::runtime::BuildSpec;

/// Where the Dockerfile travels in the context (`berth build -f` may name
/// one outside it, as docker's CLI allows).
pub use berth_proto::image_ref::BUILD_DOCKERFILE as DOCKERFILE_IN_CONTEXT;

/// The largest context accepted (the daemon reads it all).
pub const MAX_CONTEXT: u64 = 8 << 30;

pub type ProgressStream =
    std::pin::Pin<Box<dyn Stream<Item = Result<BuildProgress, Status>> + Send>>;

/// Receives the options and the context, then builds; the stream carries
/// the daemon's output and ends with the result.
pub async fn run(
    agent: Arc<Agent>,
    mut upload: impl Stream<Item = Result<BuildUpload, Status>> + Unpin + Send + 'static,
) -> Result<ProgressStream, Status> {
    let options = match upload.next().await {
        Some(Ok(BuildUpload {
            options: Some(o), ..
        })) => o,
        _ => return Err(Status::invalid_argument("a build starts with its options")),
    };
    let mut spool =
        tempfile::tempfile().map_err(|e| Status::internal(format!("spooling the context: {e}")))?;
    let mut size = 0u64;
    while let Some(msg) = upload.next().await {
        let msg = msg?;
        size += msg.context.len() as u64;
        if size > MAX_CONTEXT {
            return Err(Status::invalid_argument(format!(
                "the build context is over {} GiB: list what the build does not need in .dockerignore",
                MAX_CONTEXT >> 30
            )));
        }
        spool
            .write_all(&msg.context)
            .map_err(|e| Status::internal(format!("spooling the context: {e}")))?;
    }
    check_dockerfile(&mut spool, &options)?;
    tracing::info!(tag = %options.tag, bytes = size, "building an image");
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(64);
    let spec = BuildSpec {
        tag: options.tag.clone(),
        dockerfile: DOCKERFILE_IN_CONTEXT.into(),
        build_args: options.build_args.clone().into_iter().collect(),
        target: options.target.clone(),
    };
    let context = file_stream(spool)?;
    let runtime = agent.runtime.clone();
    let build = tokio::spawn(async move { runtime.build_image(&spec, context, tx).await });
    let tag = options.tag.clone();
    let out = async_stream::stream! {
        while let Some(line) = rx.recv().await {
            yield Ok(BuildProgress { event: Some(build_progress::Event::Output(line)) });
        }
        let result = match build.await {
            Ok(Ok(image_id)) => {
                tracing::info!(%tag, %image_id, "image built");
                // The controller answers once a report lists the image.
                agent.report_now.notify_one();
                BuildResult { image_id, tag, error: String::new() }
            }
            Ok(Err(e)) => BuildResult { image_id: String::new(), tag, error: e.to_string() },
            Err(e) => BuildResult { image_id: String::new(), tag, error: format!("the build stopped: {e}") },
        };
        yield Ok(BuildProgress { event: Some(build_progress::Event::Result(result)) });
    };
    Ok(Box::pin(out))
}

/// The context must carry the Dockerfile the controller checked (its FROM
/// images, its refusal of pulls): the same bytes, at the agreed path.
fn check_dockerfile(spool: &mut std::fs::File, options: &BuildOptions) -> Result<(), Status> {
    use std::io::Seek;
    spool
        .rewind()
        .map_err(|e| Status::internal(format!("reading the context: {e}")))?;
    let mut archive = tar::Archive::new(&mut *spool);
    let entries = archive
        .entries()
        .map_err(|e| Status::invalid_argument(format!("the build context is not a tar: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| {
            Status::invalid_argument(format!("the build context is not a tar: {e}"))
        })?;
        let path = entry
            .path()
            .map(|p| p.to_string_lossy().to_string())
            .unwrap_or_default();
        if path.trim_start_matches("./") == DOCKERFILE_IN_CONTEXT {
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(|e| Status::invalid_argument(format!("reading the Dockerfile: {e}")))?;
            if text != options.dockerfile {
                return Err(Status::invalid_argument(
                    "the context's Dockerfile is not the one the controller checked",
                ));
            }
            return spool
                .rewind()
                .map_err(|e| Status::internal(format!("reading the context: {e}")));
        }
    }
    Err(Status::invalid_argument(format!(
        "the build context has no {DOCKERFILE_IN_CONTEXT}"
    )))
}

/// The spooled file as the daemon's request body, 1 MiB at a time.
fn file_stream(
    file: std::fs::File,
) -> Result<futures::stream::BoxStream<'static, std::io::Result<bytes::Bytes>>, Status> {
    let file = tokio::fs::File::from_std(file);
    Ok(futures::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 1 << 20];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    })
    .boxed())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(files: &[(&str, &str)]) -> std::fs::File {
        let mut f = tempfile::tempfile().unwrap();
        {
            let mut b = tar::Builder::new(&mut f);
            for (name, text) in files {
                let mut h = tar::Header::new_gnu();
                h.set_size(text.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                b.append_data(&mut h, name, text.as_bytes()).unwrap();
            }
            b.finish().unwrap();
        }
        f
    }

    #[test]
    fn the_context_must_carry_the_checked_dockerfile() {
        let opts = BuildOptions {
            dockerfile: "FROM a\n".into(),
            ..Default::default()
        };
        let mut ok = context(&[("app.py", "x"), (DOCKERFILE_IN_CONTEXT, "FROM a\n")]);
        check_dockerfile(&mut ok, &opts).unwrap();
        let mut other = context(&[(DOCKERFILE_IN_CONTEXT, "FROM evil\n")]);
        let e = check_dockerfile(&mut other, &opts).unwrap_err();
        assert!(e.message().contains("not the one"), "{e}");
        let mut none = context(&[("Dockerfile", "FROM a\n")]);
        assert!(check_dockerfile(&mut none, &opts).is_err());
    }
}
