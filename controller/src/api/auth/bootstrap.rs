//! Setting a cluster up: the CA and the first admin's token
//! (`berth-controller tls init`), certificates signed offline
//! (`berth-controller tls issue`), and a controller's own certificate,
//! minted at every start from the CA in its TLS directory (so copying
//! that directory to each controller is all a replicated cluster needs).
//!
//! A TLS directory holds `ca.pem` (everyone), `ca.key` (controllers),
//! `bootstrap.sha256` (the first admin token's hash), and for agents
//! `cert.pem` + `key.pem`.

use std::path::Path;
use std::time::Duration;

use berth_proto::tls::{Ca, Peer, Tls, NODE_CERT_LIFETIME};

use super::tokens;
use crate::{Error, Result};

/// The bootstrap admin token's hash, next to the CA.
const BOOTSTRAP_FILE: &str = "bootstrap.sha256";

/// Creates a CA and a bootstrap admin token in `out` (which must not hold
/// a CA already: overwriting one would orphan every certificate it
/// signed). Returns the token, which is also written to `admin.token`.
pub fn init(out: &Path, cluster: &str) -> Result<String> {
    if out.join("ca.pem").exists() {
        return Err(Error::FailedPrecondition(format!(
            "{} already holds a CA; use another --out, or remove it to start over",
            out.display()
        )));
    }
    std::fs::create_dir_all(out)
        .map_err(|e| Error::FailedPrecondition(format!("creating {}: {e}", out.display())))?;
    let ca = Ca::generate(cluster)?;
    ca.save(out)?;
    let (_, token) = tokens::mint();
    write_secret(&out.join("admin.token"), &token)?;
    std::fs::write(out.join(BOOTSTRAP_FILE), tokens::hash(&token))
        .map_err(|e| Error::FailedPrecondition(format!("writing {BOOTSTRAP_FILE}: {e}")))?;
    Ok(token)
}

fn write_secret(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| Error::FailedPrecondition(format!("writing {}: {e}", path.display())))
}

/// Signs a certificate for `peer` with the CA in `ca_dir`, into `out`.
pub fn issue(
    ca_dir: &Path,
    peer: &Peer,
    names: &[String],
    lifetime: Duration,
    out: &Path,
) -> Result<()> {
    let ca = Ca::load(ca_dir)?;
    ca.issue(peer, names, lifetime)?.save(out)?;
    Ok(())
}

/// The bootstrap token's hash in `tls_dir`, if there is one.
pub fn bootstrap_hash(tls_dir: &Path) -> Option<String> {
    std::fs::read_to_string(tls_dir.join(BOOTSTRAP_FILE))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| s.len() == 64)
}

/// Controller `id`'s TLS: its own `cert.pem`/`key.pem` when the directory
/// has them (they must name this controller), else a certificate minted
/// now from the CA there.
pub fn controller_tls(tls_dir: &Path, id: u64, names: &[String]) -> Result<Tls> {
    let loaded = Tls::load(tls_dir)?;
    if let Some(peer) = loaded.peer() {
        if peer != Peer::Controller(id) {
            return Err(Error::FailedPrecondition(format!(
                "{}/cert.pem is for {peer}, not controller {id}",
                tls_dir.display()
            )));
        }
        return Ok(loaded);
    }
    let ca = Ca::load(tls_dir).map_err(|e| {
        Error::FailedPrecondition(format!(
            "{e}: a controller needs the cluster CA (ca.pem and ca.key from `berth-controller tls init`) in --tls-dir"
        ))
    })?;
    Ok(ca.issue(&Peer::Controller(id), names, NODE_CERT_LIFETIME)?)
}

/// The CA in `tls_dir`, for signing joining nodes' requests.
pub fn ca(tls_dir: &Path) -> Result<Ca> {
    Ok(Ca::load(tls_dir)?)
}
