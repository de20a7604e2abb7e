//! `berth image save IMAGE -o FILE` and `berth image load -i FILE --to HOST`:
//! `docker save` / `docker load` between this machine and any host, through
//! the controller. The archive travels in the agents' chunk format (zstd
//! where it saves bytes, BLAKE3 of the whole archive last), so both ends
//! verify it: a save that does not match leaves no file, a load that does
//! not match (or stops early) loads nothing.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use berth_proto::archive::{decode, encode, CHUNK};
use berth_proto::v1::{ImageChunk, ImageUpload, SaveImageRequest};
use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::client::{status_message, Client};
use crate::output::{bytes, Format};

/// A byte bar on a terminal's stderr, nothing otherwise.
fn bar(len: u64, what: &str, format: Format) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() || format == Format::Json {
        return None;
    }
    let b = ProgressBar::new(len.max(1));
    b.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    b.set_prefix(what.to_string());
    Some(b)
}

/// Removes a half-written archive unless it was completed.
struct Partial(Option<PathBuf>);

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// `-o` is the archive here, so there is no JSON form: the summary goes to
/// stderr (stdout may be the archive itself).
pub async fn save(
    client: &Client,
    image: &str,
    output: Option<PathBuf>,
    from: Option<String>,
) -> Result<()> {
    if output.is_none() && std::io::stdout().is_terminal() {
        bail!("refusing to write an image archive to a terminal: use -o FILE or redirect stdout");
    }
    let mut stream = client
        .images()
        .save_image(SaveImageRequest {
            image: image.to_string(),
            node: from.unwrap_or_default(),
        })
        .await
        .map_err(status_message)?
        .into_inner();
    let first = stream
        .message()
        .await
        .map_err(status_message)?
        .ok_or_else(|| anyhow!("the holder sent nothing"))?;
    // Written beside the target and renamed when verified: never a
    // half archive under the name asked for.
    let (mut out, mut partial): (Box<dyn Write>, Partial) = match &output {
        Some(path) => {
            let part = part_path(path);
            let f = std::fs::File::create(&part)
                .with_context(|| format!("creating {}", part.display()))?;
            (Box::new(std::io::BufWriter::new(f)), Partial(Some(part)))
        }
        None => (Box::new(std::io::stdout().lock()), Partial(None)),
    };
    let progress = bar(first.image_size, image, Format::Table);
    let mut hash = blake3::Hasher::new();
    let mut written = 0u64;
    let trailer: ImageChunk = loop {
        let Some(chunk) = stream.message().await.map_err(status_message)? else {
            bail!("the stream from the holder ended early: nothing was saved");
        };
        if !chunk.archive_digest.is_empty() {
            break chunk;
        }
        let raw = decode(chunk).map_err(|e| anyhow!("{e}"))?;
        hash.update(&raw);
        written += raw.len() as u64;
        out.write_all(&raw).context("writing the archive")?;
        if let Some(b) = &progress {
            b.set_length(first.image_size.max(written));
            b.set_position(written);
        }
    };
    if let Some(b) = &progress {
        b.finish_and_clear();
    }
    let digest = hash.finalize().to_hex().to_string();
    if digest != trailer.archive_digest || written != trailer.archive_bytes {
        bail!("the archive does not match its checksum (got {written} bytes, sent {}): nothing was saved", trailer.archive_bytes);
    }
    out.flush().context("writing the archive")?;
    drop(out);
    if let (Some(path), Some(part)) = (&output, partial.0.take()) {
        std::fs::rename(&part, path).with_context(|| format!("renaming to {}", path.display()))?;
    }
    let file = output.as_ref().map(|p| p.display().to_string());
    eprintln!(
        "berth: saved {image} ({}, {}) to {}",
        super::push::short(&first.image_id),
        bytes(written),
        file.as_deref().unwrap_or("stdout")
    );
    Ok(())
}

fn part_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    path.with_file_name(name)
}

pub async fn load(
    client: &Client,
    input: Option<PathBuf>,
    to: Vec<String>,
    format: Format,
) -> Result<()> {
    let (reader, size): (Box<dyn Read + Send>, u64) = match &input {
        Some(p) => {
            let f = std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
            let size = f.metadata()?.len();
            (Box::new(f), size)
        }
        None if std::io::stdin().is_terminal() => {
            bail!("no archive: use -i FILE, or pipe one in (docker save IMAGE | berth image load)")
        }
        None => (Box::new(std::io::stdin()), 0),
    };
    // No --to: the controller chooses (and says which host in its answer).
    let node = to.first().cloned().unwrap_or_default();
    let progress = bar(size, if node.is_empty() { "a host" } else { &node }, format);
    let (tx, rx) = tokio::sync::mpsc::channel::<ImageUpload>(4);
    let reading = {
        let progress = progress.clone();
        std::thread::spawn(move || send_archive(reader, tx, progress))
    };
    let first = ImageUpload {
        node: node.clone(),
        archive_bytes: size,
        chunk: None,
    };
    let uploads = futures::StreamExt::chain(
        futures::stream::iter([first]),
        tokio_stream::wrappers::ReceiverStream::new(rx),
    );
    let result = client.images().load_image(uploads).await;
    if let Some(b) = &progress {
        b.finish_and_clear();
    }
    // A read error ends the upload early (the host loads nothing); say why.
    reading
        .join()
        .map_err(|_| anyhow!("the archive reader panicked"))??;
    let loaded = result.map_err(status_message)?.into_inner();
    if format == Format::Json {
        let v =
            json!({"node": loaded.node, "loaded": loaded.loaded, "bytes": loaded.archive_bytes});
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for name in &loaded.loaded {
            eprintln!(
                "berth: loaded {name} on {} ({})",
                loaded.node,
                bytes(loaded.archive_bytes)
            );
        }
    }
    if to.len() > 1 {
        for name in loaded.loaded {
            super::push::run(client, name, to[1..].to_vec(), false, format).await?;
        }
    }
    Ok(())
}

/// Reads the archive in chunks, encodes and hashes them, and sends the
/// trailer last. Runs on its own thread (blocking reads).
fn send_archive(
    mut reader: Box<dyn Read + Send>,
    tx: tokio::sync::mpsc::Sender<ImageUpload>,
    progress: Option<ProgressBar>,
) -> Result<()> {
    let mut hash = blake3::Hasher::new();
    let mut total = 0u64;
    loop {
        let mut buf = Vec::with_capacity(CHUNK);
        let n = (&mut reader)
            .take(CHUNK as u64)
            .read_to_end(&mut buf)
            .context("reading the archive (nothing was loaded)")?;
        if n == 0 {
            break;
        }
        hash.update(&buf);
        total += n as u64;
        let chunk = encode(Bytes::from(buf), true).map_err(|e| anyhow!("{e}"))?;
        if tx
            .blocking_send(ImageUpload {
                chunk: Some(chunk),
                ..Default::default()
            })
            .is_err()
        {
            return Ok(()); // the upload failed; its error says why
        }
        if let Some(b) = &progress {
            b.set_position(total);
        }
    }
    let _ = tx.blocking_send(ImageUpload {
        chunk: Some(ImageChunk {
            archive_digest: hash.finalize().to_hex().to_string(),
            archive_bytes: total,
            ..Default::default()
        }),
        ..Default::default()
    });
    Ok(())
}
