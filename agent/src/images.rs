//! Moving images agent to agent: the source streams its daemon's `docker
//! save` archive in chunks (zstd where it saves bytes), the target feeds them
//! to its daemon's `docker load` as they arrive. Nothing is written to disk
//! and at most a few chunks are in memory on either side (bounded channels
//! and gRPC flow control carry backpressure end to end).
//!
//! Integrity: the source sends the BLAKE3 digest of the whole raw archive last; the
//! target hashes what it feeds and holds back the final chunk until the two
//! match, so a corrupt or truncated stream never completes a load (the daemon
//! gets an aborted upload and keeps nothing), then compares the loaded
//! image's id with the source's.

use berth_proto::tls::Tls;
use std::sync::Arc;

use berth_proto::archive::{decode, encode, CHUNK, MAX_MESSAGE, WINDOW};
use berth_proto::internal::v1::agent_service_client::AgentServiceClient;
use berth_proto::internal::v1::ExportImageRequest;
use berth_proto::v1::{ImageChunk, TransferProgress};
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use crate::layers::{self, TarFilter};
use crate::relay::Relay;
use crate::runtime::Images;
use crate::{Error, Result};

/// A free-space margin on the target beyond the image's own size: `docker
/// load` unpacks layers while it reads.
pub const DISK_FACTOR: u64 = 2;

/// The source side: the daemon's archive of `reference` as chunks, without
/// the files of layers whose chain id is in `have` (the receiver's).
pub fn export(
    runtime: Arc<dyn Images>,
    reference: String,
    compress: bool,
    have: Vec<String>,
) -> impl Stream<Item = Result<ImageChunk>> {
    async_stream::try_stream! {
        let (id, size) = runtime
            .image(&reference)
            .await?
            .ok_or_else(|| Error::NotFound(format!("image {reference} is not on this host")))?;
        yield ImageChunk { image_id: id, image_size: size, ..ImageChunk::default() };
        let mut filter = if have.is_empty() {
            None
        } else {
            let diffs = runtime.image_layers(&reference).await?;
            let plan = layers::Plan::new(&diffs, have.into_iter().collect());
            let shared = plan.chains.iter().filter(|c| plan.have.contains(*c)).count();
            tracing::debug!(image = %reference, layers = diffs.len(), shared, "layers the receiver has");
            plan.skips_any().then(|| TarFilter::new(plan))
        };
        let mut source = runtime.export_image(&reference);
        let mut hash = blake3::Hasher::new();
        let mut total = 0u64;
        let mut buf = BytesMut::with_capacity(CHUNK);
        let corrupt = crate::faults::corrupts_exports_of(&reference);
        let pace = crate::faults::export_pace();
        loop {
            let next = source.next().await.transpose()?;
            match (&next, &mut filter) {
                (Some(piece), None) => buf.extend_from_slice(piece),
                (Some(piece), Some(f)) => buf.extend_from_slice(&f.push(piece).map_err(Error::Transfer)?),
                (None, Some(f)) => buf.extend_from_slice(&f.finish().map_err(Error::Transfer)?),
                (None, None) => {}
            }
            while buf.len() >= CHUNK || (next.is_none() && !buf.is_empty()) {
                let take = buf.len().min(CHUNK);
                let mut raw = buf.split_to(take);
                hash.update(&raw);
                total += raw.len() as u64;
                if corrupt && total <= CHUNK as u64 {
                    // Test hook: damage the first chunk after hashing it, as
                    // a bad NIC or disk would.
                    let mid = raw.len() / 2;
                    raw[mid] ^= 0xff;
                }
                let chunk = encode(raw.freeze(), compress)?;
                crate::metrics::metrics().wire_bytes("sent", chunk.data.len() as u64);
                yield chunk;
                if let Some(bps) = pace {
                    // After the chunk: a test sees bytes arrive, then a pause.
                    tokio::time::sleep(std::time::Duration::from_secs_f64(take as f64 / bps)).await;
                }
            }
            if next.is_none() {
                break;
            }
        }
        yield ImageChunk {
            archive_digest: hash.finalize().to_hex().to_string(),
            archive_bytes: total,
            skipped_bytes: filter.map_or(0, |f| f.skipped),
            ..ImageChunk::default()
        };
    }
}

/// How this agent asks for images: the agent's settings
/// (`--image-compress`, `--image-skip-layers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageOptions {
    /// Ask senders to compress chunks that shrink (zstd).
    pub compress: bool,
    /// Ask senders to leave out the layers this daemon already has.
    pub skip_layers: bool,
}

impl Default for ImageOptions {
    fn default() -> Self {
        ImageOptions {
            compress: true,
            skip_layers: true,
        }
    }
}

/// The target side: loads `reference` from the first of `sources` that
/// delivers it whole, reporting progress on `progress`. Returns the id of
/// the image as loaded.
pub async fn fetch(
    runtime: Arc<dyn Images>,
    tls: &Tls,
    opts: ImageOptions,
    reference: &str,
    sources: &[String],
    progress: &mpsc::Sender<TransferProgress>,
    mut relay: Option<Arc<Relay>>,
) -> Result<String> {
    if sources.is_empty() {
        return Err(Error::Transfer(format!("no host holds {reference}")));
    }
    let mut failures = Vec::new();
    for source in sources {
        // Only the first attempt is relayed: downstream agents that saw part
        // of a failed stream start over from a holder of their own.
        let relaying = relay.take();
        let start = std::time::Instant::now();
        let fetched = fetch_from(
            runtime.clone(),
            tls,
            opts,
            reference,
            source,
            progress,
            relaying.as_deref(),
        )
        .await;
        crate::metrics::metrics().transfer("received", fetched.is_ok(), start.elapsed());
        match fetched {
            Ok(id) => return Ok(id),
            Err(e) => {
                if let Some(r) = relaying {
                    r.fail(&e.to_string()).await;
                }
                tracing::warn!(%source, image = %reference, error = %e, "transfer failed");
                let _ = progress
                    .send(TransferProgress {
                        source: source.clone(),
                        message: format!("from {source}: {e}; trying the next holder"),
                        ..TransferProgress::default()
                    })
                    .await;
                failures.push(format!("{source}: {e}"));
            }
        }
    }
    Err(Error::Transfer(format!(
        "could not load {reference} from any holder ({})",
        failures.join("; ")
    )))
}

async fn fetch_from(
    runtime: Arc<dyn Images>,
    tls: &Tls,
    opts: ImageOptions,
    reference: &str,
    source: &str,
    progress: &mpsc::Sender<TransferProgress>,
    relay: Option<&Relay>,
) -> Result<String> {
    // Agent to agent: mutual TLS, this node's certificate, the source's
    // verified as a node's.
    let channel = berth_proto::connect::endpoint(source, tls, berth_proto::tls::NODE_DOMAIN)
        .map_err(|e| Error::Transfer(format!("bad source address {source}: {e}")))?
        .initial_stream_window_size(WINDOW)
        .initial_connection_window_size(2 * WINDOW)
        .connect()
        .await
        .map_err(|e| Error::Transfer(format!("cannot reach {source}: {e}")))?;
    let mut client = AgentServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
    // A relayed stream serves other targets too: it carries every layer.
    let have_layers = if relay.is_none() && opts.skip_layers {
        local_chains(runtime.as_ref()).await
    } else {
        Vec::new()
    };
    let mut chunks = client
        .export_image(ExportImageRequest {
            image: reference.to_string(),
            compress: opts.compress,
            have_layers,
        })
        .await
        .map_err(|e| Error::Transfer(e.message().to_string()))?
        .into_inner();
    let first = chunks
        .message()
        .await
        .map_err(|e| Error::Transfer(e.message().to_string()))?
        .ok_or_else(|| Error::Transfer("the source sent nothing".into()))?;
    if let Some(r) = relay {
        r.forward(&first).await;
    }
    let (want_id, total) = (first.image_id, first.image_size);
    let chunks = chunks
        .map(|r| r.map_err(|e| e.message().to_string()))
        .then(|chunk| async move {
            if let (Some(r), Ok(c)) = (relay, &chunk) {
                r.forward(c).await;
            }
            chunk
        });
    let counted = std::sync::atomic::AtomicU64::new(0);
    let loaded = load_verified(runtime.clone(), chunks, source, |done, wire| {
        // Counted as it arrives, so a rate() shows a transfer in flight.
        let before = counted.swap(wire, std::sync::atomic::Ordering::Relaxed);
        crate::metrics::metrics().wire_bytes("received", wire.saturating_sub(before));
        let _ = progress.try_send(TransferProgress {
            bytes_done: done,
            bytes_total: total.max(done),
            wire_bytes: wire,
            source: source.to_string(),
            ..TransferProgress::default()
        });
    })
    .await?;
    let (done, wire, skipped) = (
        loaded.archive_bytes,
        loaded.wire_bytes,
        loaded.skipped_bytes,
    );
    let before = counted.swap(wire, std::sync::atomic::Ordering::Relaxed);
    crate::metrics::metrics().wire_bytes("received", wire.saturating_sub(before));
    match runtime.image(reference).await? {
        Some((id, _)) if id == want_id => {
            let _ = progress
                .send(TransferProgress {
                    bytes_done: done,
                    bytes_total: done,
                    wire_bytes: wire,
                    source: source.to_string(),
                    image_id: id.clone(),
                    done: true,
                    skipped_bytes: skipped,
                    ..TransferProgress::default()
                })
                .await;
            Ok(id)
        }
        Some((id, _)) => Err(Error::Transfer(format!(
            "loaded {reference} as {id}, but {source} has {want_id}"
        ))),
        None => Err(Error::Transfer(format!(
            "the daemon reported no error but has no {reference} after the load"
        ))),
    }
}

/// Chain ids of every layer of every image here: what a sender may leave
/// out. Empty when the daemon cannot say (the sender then sends it all).
pub async fn local_chains(runtime: &dyn Images) -> Vec<String> {
    let images = match runtime.images().await {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list images: asking for whole archives");
            return Vec::new();
        }
    };
    let mut all = std::collections::BTreeSet::new();
    for i in images {
        match runtime.image_layers(&i.id).await {
            Ok(diffs) => all.extend(layers::chain_ids(&diffs)),
            Err(e) => tracing::warn!(image = %i.id, error = %e, "cannot read an image's layers"),
        }
    }
    all.into_iter().collect()
}

/// What a verified load read and the daemon loaded.
pub struct Loaded {
    pub archive_bytes: u64,
    pub wire_bytes: u64,
    /// Layer bytes the sender left out (the daemon had them).
    pub skipped_bytes: u64,
    pub names: Vec<String>,
}

/// Feeds archive chunks (as `export` makes them: data, then the trailer)
/// to the daemon's `docker load`, hashing as they pass and holding back the
/// last chunk until the trailer matches: a stream that breaks, ends early
/// or does not match aborts the upload, and the daemon loads nothing.
/// `from` names the sender in errors; `progress` gets (raw, wire) bytes.
pub async fn load_verified(
    runtime: Arc<dyn Images>,
    chunks: impl Stream<Item = std::result::Result<ImageChunk, String>>,
    from: &str,
    progress: impl Fn(u64, u64),
) -> Result<Loaded> {
    let mut chunks = std::pin::pin!(chunks);
    // The daemon reads from this channel; a few chunks in flight at most.
    let (feed, rx) = mpsc::channel::<std::result::Result<Bytes, std::io::Error>>(4);
    let archive: BoxStream<'static, _> = tokio_stream::wrappers::ReceiverStream::new(rx).boxed();
    let loader = {
        let runtime = runtime.clone();
        tokio::spawn(async move { runtime.import_image(archive).await })
    };
    let abort = |feed: mpsc::Sender<_>, why: String| async move {
        let _ = feed.send(Err(std::io::Error::other(why.clone()))).await;
        drop(feed);
        Error::Transfer(why)
    };
    let mut hash = blake3::Hasher::new();
    let (mut done, mut wire) = (0u64, 0u64);
    let mut held: Option<Bytes> = None;
    let trailer = loop {
        let chunk = match chunks.next().await {
            Some(Ok(c)) => c,
            None => return Err(abort(feed, format!("{from} ended the stream early")).await),
            Some(Err(e)) => return Err(abort(feed, format!("stream from {from} broke: {e}")).await),
        };
        if !chunk.archive_digest.is_empty() {
            break chunk;
        }
        if chunk.data.is_empty() {
            continue; // the header (image id and size)
        }
        wire += chunk.data.len() as u64;
        let raw = match decode(chunk) {
            Ok(r) => r,
            Err(e) => return Err(abort(feed, e.to_string()).await),
        };
        hash.update(&raw);
        done += raw.len() as u64;
        // Feed the previous chunk; hold this one until the next arrives.
        if let Some(prev) = held.replace(raw) {
            if feed.send(Ok(prev)).await.is_err() {
                break ImageChunk::default(); // the loader gave up: its error says why
            }
        }
        progress(done, wire);
    };
    let digest = hash.finalize().to_hex().to_string();
    if !trailer.archive_digest.is_empty() {
        if trailer.archive_digest != digest || trailer.archive_bytes != done {
            let why = format!(
                "the archive from {from} does not match its checksum ({} bytes, blake3 {}…; sent {} bytes, blake3 {}…): nothing was loaded",
                done,
                &digest[..12],
                trailer.archive_bytes,
                &trailer.archive_digest[..12.min(trailer.archive_digest.len())]
            );
            return Err(abort(feed, why).await);
        }
        if let Some(last) = held.take() {
            let _ = feed.send(Ok(last)).await;
        }
    }
    drop(feed);
    let names = loader
        .await
        .map_err(|e| Error::Transfer(format!("the loader stopped: {e}")))??;
    Ok(Loaded {
        archive_bytes: done,
        wire_bytes: wire,
        skipped_bytes: trailer.skipped_bytes,
        names,
    })
}

/// Whether the target's Docker root can take an image of `size` bytes.
pub fn disk_check(free: u64, size: u64, reference: &str, root: &str) -> Result<()> {
    let need = size.saturating_mul(DISK_FACTOR);
    if size > 0 && free < need {
        return Err(Error::Transfer(format!(
            "not enough disk for {reference}: {root} has {} MiB free, the image needs about {} MiB (twice its {} MiB size while it loads); free space (berth image gc, docker image prune) or pick another host",
            free >> 20,
            need >> 20,
            size >> 20
        )));
    }
    Ok(())
}

#[cfg(test)]
#[path = "images_tests.rs"]
mod tests;
