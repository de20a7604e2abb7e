//! Where `berth` finds its cluster: the controllers' addresses, the CA to
//! trust and the user's token. Flags and the environment win
//! (`--addr`/`BERTH_ADDR`, `BERTH_CA`, `BERTH_TOKEN`), then the config file
//! (`BERTH_CONFIG`, else `~/.config/berth/config.toml`), which `berth dev`
//! writes so every command on that machine just works.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use berth_proto::connect::{Bearer, Dial};
use berth_proto::tls::Tls;
use serde::{Deserialize, Serialize};

const DEFAULT_ADDR: &str = "127.0.0.1:7450";

/// The config file's contents.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Controller addresses, comma-separated.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub addr: String,
    /// Path of the cluster CA's certificate (ca.pem).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca: String,
    /// The user's token.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token: String,
}

pub fn path() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_CONFIG") {
        return PathBuf::from(p);
    }
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("/etc"))
        .join("berth/config.toml")
}

pub fn read(path: &Path) -> Result<File> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("reading {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(File::default()),
        Err(e) => Err(anyhow!("reading {}: {e}", path.display())),
    }
}

/// Writes the config file, owner-only (it holds a secret).
pub fn write(path: &Path, file: &File) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(toml::to_string(file)?.as_bytes())?;
    Ok(())
}

/// What a command connects with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub addr: String,
    pub dial: Dial,
    /// The user's token (`berth dashboard` puts it in the link it prints).
    pub token: Option<String>,
}

impl Settings {
    /// `addr`: the --addr flag (or BERTH_ADDR), if given.
    pub fn load(addr: Option<&str>) -> Result<Settings> {
        let path = path();
        let file = read(&path)?;
        let addr = addr
            .map(String::from)
            .or_else(|| (!file.addr.is_empty()).then(|| file.addr.clone()))
            .unwrap_or_else(|| DEFAULT_ADDR.to_string());
        let ca = std::env::var("BERTH_CA")
            .ok()
            .filter(|s| !s.is_empty())
            .or_else(|| (!file.ca.is_empty()).then(|| file.ca.clone()))
            .ok_or_else(|| {
                anyhow!(
                    "no cluster CA to trust: start a local cluster with `berth dev` (it writes {}), or set `ca` there or BERTH_CA to the cluster's ca.pem",
                    path.display()
                )
            })?;
        let ca_pem =
            std::fs::read_to_string(&ca).with_context(|| format!("reading the cluster CA {ca}"))?;
        let token = std::env::var("BERTH_TOKEN")
            .ok()
            .filter(|s| !s.is_empty())
            .or_else(|| (!file.token.is_empty()).then(|| file.token.clone()));
        let bearer = Bearer::new(token.as_deref()).map_err(|e| anyhow!(e))?;
        Ok(Settings {
            addr,
            dial: Dial {
                tls: Tls::ca_only(ca_pem),
                bearer,
            },
            token,
        })
    }
}
