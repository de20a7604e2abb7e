//! Skipping the layers a receiver already has. `docker load` (the classic
//! image store) looks up each layer by its chain id and reads the layer's
//! file from the archive only when the chain is missing, so a sender may
//! leave those files out: the archive stays valid for that receiver and
//! only the new layers cross the network and the receiver's disk.
//!
//! Two archive layouts name layer files differently:
//! - OCI (Docker 25 and later): `blobs/sha256/<diff id>`, known up front;
//! - legacy (Docker 20.10-24): `<v1 id>/layer.tar`, where the v1 id hashes
//!   the layer's chain id with its `<v1 id>/json` — which the archive holds
//!   just before the layer, so the filter recognises each layer on the way
//!   by recomputing that hash (`legacy_chain`). A layer it cannot place is
//!   sent: a miss costs bytes, never a broken load.
//!
//! Pure: chain ids from diff ids, which archive paths to leave out, and a
//! streaming tar filter that drops whole entries and passes every other
//! byte through untouched.

use std::collections::HashSet;

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};

/// Chain ids of an image's layers, bottom up (the OCI image spec's
/// ChainID: the first is the first diff id, each next one
/// `sha256(parent_chain + " " + diff_id)`).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => format!(
                "sha256:{:x}",
                Sha256::digest(format!("{parent} {d}").as_bytes())
            ),
        };
        out.push(next);
    }
    out
}

/// Archive paths (`blobs/sha256/<hex>`: `docker save` stores each layer
/// under its diff id) of the layers whose chain the receiver `has`. A
/// layer file also needed at a position whose chain is missing is kept.
pub fn skip_paths(diff_ids: &[String], has: &HashSet<String>) -> HashSet<String> {
    let chains = chain_ids(diff_ids);
    let needed: HashSet<&String> = diff_ids
        .iter()
        .zip(&chains)
        .filter(|(_, c)| !has.contains(*c))
        .map(|(d, _)| d)
        .collect();
    diff_ids
        .iter()
        .zip(&chains)
        .filter(|(d, c)| has.contains(*c) && !needed.contains(d))
        .filter_map(|(d, _)| d.strip_prefix("sha256:"))
        .map(|hex| format!("blobs/sha256/{hex}"))
        .collect()
}

const BLOCK: usize = 512;

enum State {
    /// Expecting a header block.
    Header,
    /// Inside an entry's data (padded to a whole block): pass it or drop it.
    Data { left: u64, keep: bool },
    /// After the end-of-archive blocks: everything passes.
    Trailer,
}

/// What to leave out of one image's archive.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// OCI layout: layer files by path (`skip_paths`).
    pub paths: HashSet<String>,
    /// Legacy layout: the image's chain ids, bottom up, and the ones the
    /// receiver has.
    pub chains: Vec<String>,
    pub have: HashSet<String>,
}

impl Plan {
    pub fn new(diff_ids: &[String], have: HashSet<String>) -> Plan {
        Plan {
            paths: skip_paths(diff_ids, &have),
            chains: chain_ids(diff_ids),
            have,
        }
    }

    /// Whether anything at all could be left out.
    pub fn skips_any(&self) -> bool {
        self.chains.iter().any(|c| self.have.contains(c))
    }
}

/// The chain id of a legacy layer directory `v1_id`, from its `json`: the
/// one of `chains` whose v1 id (Docker's `CreateID`: the json without its
/// id, with `layer_id` and the parent's digest, top-level keys sorted)
/// hashes to `v1_id`. Docker sets the parent and os fields around that
/// hash in ways that changed between versions, so each candidate is tried
/// with them as saved, adjusted and left out; only an exact match counts.
pub fn legacy_chain(v1_id: &str, json: &[u8], chains: &[String]) -> Option<String> {
    use serde_json::value::RawValue;
    use std::collections::BTreeMap;
    let mut fields: BTreeMap<String, Box<RawValue>> = serde_json::from_slice(json).ok()?;
    fields.remove("id");
    let parent = fields.remove("parent");
    let os = fields.remove("os");
    let parents: Vec<Option<String>> = match &parent {
        None => vec![None],
        Some(p) => {
            let hex = p.get().trim_matches('"');
            vec![
                Some(p.get().to_string()),
                Some(format!("\"sha256:{hex}\"")),
                None,
            ]
        }
    };
    for chain in chains {
        for parent in &parents {
            for with_os in [true, false] {
                // Nested values stay byte for byte as Docker wrote them.
                let mut f: BTreeMap<&str, &str> =
                    fields.iter().map(|(k, v)| (k.as_str(), v.get())).collect();
                let layer_id = format!("\"{chain}\"");
                f.insert("layer_id", &layer_id);
                if let Some(p) = parent {
                    f.insert("parent", p);
                }
                if let (true, Some(os)) = (with_os, &os) {
                    f.insert("os", os.get());
                }
                let body: Vec<String> = f.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                let id = Sha256::digest(format!("{{{}}}", body.join(",")).as_bytes());
                if format!("{id:x}") == v1_id {
                    return Some(chain.clone());
                }
            }
        }
    }
    None
}

/// A legacy layer directory's json entry: `<64 hex>/json`.
fn legacy_json_dir(name: &str) -> Option<&str> {
    let dir = name.strip_suffix("/json")?;
    (dir.len() == 64 && dir.bytes().all(|b| b.is_ascii_hexdigit())).then_some(dir)
}

/// Drops the layer files a receiver has (see `Plan`) from a tar stream fed
/// in pieces of any size. PAX and GNU long-name headers travel with the
/// entry they describe.
pub struct TarFilter {
    plan: Plan,
    /// Legacy layer directories whose `layer.tar` is left out.
    skip_dirs: HashSet<String>,
    buf: BytesMut,
    state: State,
    /// Extended headers waiting for the entry they describe.
    pending: BytesMut,
    pending_path: Option<String>,
    pending_size: Option<u64>,
    /// Bytes left out so far.
    pub skipped: u64,
}

impl TarFilter {
    pub fn new(plan: Plan) -> TarFilter {
        TarFilter {
            plan,
            skip_dirs: HashSet::new(),
            buf: BytesMut::new(),
            state: State::Header,
            pending: BytesMut::new(),
            pending_path: None,
            pending_size: None,
            skipped: 0,
        }
    }

    /// Takes the next piece; returns what may be sent on.
    pub fn push(&mut self, piece: &[u8]) -> Result<Bytes, String> {
        self.buf.extend_from_slice(piece);
        let mut out = BytesMut::new();
        loop {
            match self.state {
                State::Trailer => {
                    out.extend_from_slice(&self.buf.split());
                    return Ok(out.freeze());
                }
                State::Data { left, keep } => {
                    let n = (left as usize).min(self.buf.len());
                    let data = self.buf.split_to(n);
                    if keep {
                        out.extend_from_slice(&data);
                    } else {
                        self.skipped += n as u64;
                    }
                    if n as u64 == left {
                        self.state = State::Header;
                    } else {
                        self.state = State::Data {
                            left: left - n as u64,
                            keep,
                        };
                        return Ok(out.freeze());
                    }
                }
                State::Header => {
                    if self.buf.len() < BLOCK {
                        return Ok(out.freeze());
                    }
                    if self.buf[..BLOCK].iter().all(|b| *b == 0) {
                        out.extend_from_slice(&self.pending.split());
                        self.state = State::Trailer;
                        continue;
                    }
                    let header = &self.buf[..BLOCK];
                    let kind = header[156];
                    let extended = matches!(kind, b'x' | b'L');
                    // A PAX size describes the entry after the PAX header.
                    let size = match self.pending_size {
                        Some(s) if !extended => s,
                        _ => octal_size(&header[124..136])?,
                    };
                    let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
                    if extended {
                        // Small: wait until it is whole, then hold it back.
                        let whole = BLOCK + padded as usize;
                        if self.buf.len() < whole {
                            return Ok(out.freeze());
                        }
                        let ext = self.buf.split_to(whole);
                        let body = &ext[BLOCK..BLOCK + size as usize];
                        if kind == b'L' {
                            let name = body.split(|b| *b == 0).next().unwrap_or_default();
                            self.pending_path = Some(String::from_utf8_lossy(name).into());
                        } else {
                            let (path, size) = pax(body);
                            self.pending_path = path.or(self.pending_path.take());
                            self.pending_size = size;
                        }
                        self.pending.extend_from_slice(&ext);
                        continue;
                    }
                    let name = self
                        .pending_path
                        .clone()
                        .unwrap_or_else(|| ustar_name(header));
                    let name = name.trim_start_matches("./").to_string();
                    if let Some(dir) = legacy_json_dir(&name).filter(|_| size <= 1 << 20) {
                        // Small, and it says which layer the directory holds:
                        // read it whole before passing it on.
                        let whole = BLOCK + padded as usize;
                        if self.buf.len() < whole {
                            return Ok(out.freeze());
                        }
                        let body = &self.buf[BLOCK..BLOCK + size as usize];
                        if let Some(chain) = legacy_chain(dir, body, &self.plan.chains) {
                            if self.plan.have.contains(&chain) {
                                self.skip_dirs.insert(dir.to_string());
                            }
                        }
                    }
                    (self.pending_path, self.pending_size) = (None, None);
                    let keep = !self.skips(&name);
                    let head = self.buf.split_to(BLOCK);
                    let ext = self.pending.split();
                    if keep {
                        out.extend_from_slice(&ext);
                        out.extend_from_slice(&head);
                    } else {
                        self.skipped += (ext.len() + head.len()) as u64;
                    }
                    self.state = State::Data { left: padded, keep };
                }
            }
        }
    }

    fn skips(&self, name: &str) -> bool {
        self.plan.paths.contains(name)
            || name
                .strip_suffix("/layer.tar")
                .is_some_and(|dir| self.skip_dirs.contains(dir))
    }

    /// The stream ended: without tar's end-of-archive blocks (which
    /// `docker save` always writes), it was cut short.
    pub fn finish(&mut self) -> Result<Bytes, String> {
        match self.state {
            State::Trailer => Ok(self.buf.split().freeze()),
            _ => Err("the image archive ended before its end (cut short?)".into()),
        }
    }
}

/// A ustar name: the prefix field, a slash, the name field.
fn ustar_name(h: &[u8]) -> String {
    let field = |b: &[u8]| {
        let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    };
    let (name, prefix) = (field(&h[..100]), field(&h[345..500]));
    if &h[257..262] == b"ustar" && !prefix.is_empty() {
        format!("{prefix}/{name}")
    } else {
        name
    }
}

/// An octal size field, or GNU base-256 (high bit set) for big files.
fn octal_size(f: &[u8]) -> Result<u64, String> {
    if f[0] & 0x80 != 0 {
        return Ok(f[1..].iter().fold(0u64, |n, b| (n << 8) | u64::from(*b)));
    }
    let s = String::from_utf8_lossy(f);
    let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
    if s.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(s, 8).map_err(|_| format!("bad tar size field {s:?}"))
}

/// `path` and `size` of PAX records ("<len> key=value\n").
fn pax(body: &[u8]) -> (Option<String>, Option<u64>) {
    let (mut path, mut size) = (None, None);
    for rec in String::from_utf8_lossy(body).split('\n') {
        let Some((_, kv)) = rec.split_once(' ') else {
            continue;
        };
        match kv.split_once('=') {
            Some(("path", v)) => path = Some(v.to_string()),
            Some(("size", v)) => size = v.parse().ok(),
            _ => {}
        }
    }
    (path, size)
}

#[cfg(test)]
#[path = "layers_tests.rs"]
mod tests;
