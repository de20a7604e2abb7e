//! Image archives on the wire: a `docker save` archive travels as
//! `ImageChunk`s of at most `CHUNK` raw bytes, each zstd-compressed when
//! that saves bytes. The one codec every side uses — the agent that
//! exports, the agent that loads, the CLI that saves or loads a file.

use bytes::Bytes;

use crate::v1::ImageChunk;
use crate::{Error, Result};

/// Raw bytes per chunk (before compression): big enough to amortise
/// per-message costs, small enough to keep memory flat.
pub const CHUNK: usize = 2 << 20;
/// The largest gRPC message an image stream carries: a chunk and framing.
pub const MAX_MESSAGE: usize = 5 << 20;
/// HTTP/2 flow-control window for image streams: a few chunks in flight.
pub const WINDOW: u32 = 4 * CHUNK as u32;
/// zstd level: fast enough to keep up with a disk and a 10 GbE link.
const ZSTD_LEVEL: i32 = -1;

/// One chunk, compressed when that saves at least 5% (already compressed
/// layers are sent as they are).
pub fn encode(raw: Bytes, compress: bool) -> Result<ImageChunk> {
    // A 64 KiB sample first: incompressible layers (weights, already
    // compressed data) cost no more than a glance.
    let sample = &raw[..raw.len().min(64 << 10)];
    let worth = compress
        && zstd::bulk::compress(sample, ZSTD_LEVEL).is_ok_and(|z| z.len() < sample.len() / 10 * 9);
    if worth {
        let z = zstd::bulk::compress(&raw, ZSTD_LEVEL)
            .map_err(|e| Error::Archive(format!("zstd: {e}")))?;
        if z.len() < raw.len() / 20 * 19 {
            return Ok(ImageChunk {
                data: z,
                compressed: true,
                ..ImageChunk::default()
            });
        }
    }
    Ok(ImageChunk {
        data: raw.to_vec(),
        ..ImageChunk::default()
    })
}

/// The raw bytes of a chunk.
pub fn decode(chunk: ImageChunk) -> Result<Bytes> {
    if !chunk.compressed {
        return Ok(Bytes::from(chunk.data));
    }
    zstd::bulk::decompress(&chunk.data, CHUNK)
        .map(Bytes::from)
        .map_err(|e| Error::Archive(format!("a chunk does not decompress: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip_and_compress_only_when_it_pays() {
        let text = Bytes::from("hello layer\n".repeat(100_000));
        let c = encode(text.clone(), true).unwrap();
        assert!(c.compressed && c.data.len() < text.len() / 10);
        assert_eq!(decode(c).unwrap(), text);
        let plain = encode(text.clone(), false).unwrap();
        assert!(!plain.compressed);
        assert_eq!(decode(plain).unwrap(), text);
        // Noise does not compress: sent as it is.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let noise: Vec<u8> = (0..CHUNK)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let n = encode(Bytes::from(noise.clone()), true).unwrap();
        assert!(!n.compressed);
        assert_eq!(decode(n).unwrap(), noise);
        let bad = ImageChunk {
            data: vec![1, 2, 3],
            compressed: true,
            ..ImageChunk::default()
        };
        assert!(decode(bad)
            .unwrap_err()
            .to_string()
            .contains("does not decompress"));
    }
}
