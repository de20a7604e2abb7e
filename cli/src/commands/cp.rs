//! `berth cp JOB:PATH DEST` and `berth cp SRC JOB:PATH`: `docker cp` with
//! the job on whichever host it runs, streamed as tar through the
//! controller. Like docker: copying onto an existing directory puts the
//! source inside it, onto a new name creates it under that name; `-` is a
//! tar on stdin or stdout. Archives from the cluster are unpacked with the
//! tar crate's `unpack_in`, which refuses any entry that would land outside
//! the destination (`..`, absolute paths, paths through symlinks).

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use berth_proto::v1::{copy_to_input, CopyFromRequest, CopyToInput, CopyToStart, StatPathRequest};
use tokio::sync::mpsc;

use crate::client::{status_message, Client};

#[derive(clap::Args)]
pub struct Args {
    /// JOB:PATH or a local path (`-`: a tar on stdin).
    src: String,
    /// JOB:PATH or a local path (`-`: a tar on stdout).
    dest: String,
}

/// `JOB:PATH` → (job, path); local paths start with `/` or `.`, or have
/// no colon before their first slash.
fn remote(s: &str) -> Option<(&str, &str)> {
    if s.starts_with('/') || s.starts_with('.') {
        return None;
    }
    let (job, path) = s.split_once(':')?;
    (!job.is_empty() && !job.contains('/')).then_some((job, path))
}

pub async fn run(client: &Client, args: Args) -> Result<()> {
    match (remote(&args.src), remote(&args.dest)) {
        (Some((job, path)), None) => download(client, job, path, &args.dest).await,
        (None, Some((job, path))) => upload(client, &args.src, job, path).await,
        (Some(_), Some(_)) => {
            bail!("copying between two jobs is not supported: copy to a local path first")
        }
        (None, None) => bail!("one side must be JOB:PATH (e.g. berth cp train:/out ./out)"),
    }
}

/// A `Read` over chunks arriving on a channel (the tar crate reads
/// synchronously, on its own thread).
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.recv() {
                Ok(next) => (self.buf, self.pos) = (next, 0),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

async fn download(client: &Client, job: &str, path: &str, dest: &str) -> Result<()> {
    let mut stream = client
        .jobs()
        .copy_from(CopyFromRequest {
            job: job.to_string(),
            path: path.to_string(),
        })
        .await
        .map_err(status_message)?
        .into_inner();
    if dest == "-" {
        if std::io::stdout().is_terminal() {
            bail!("refusing to write a tar archive to a terminal: redirect stdout or give a path");
        }
        let mut out = std::io::stdout().lock();
        while let Some(c) = stream.message().await.map_err(status_message)? {
            out.write_all(&c.data)?;
        }
        return Ok(out.flush()?);
    }
    let dest = PathBuf::from(dest);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
    let unpack = std::thread::spawn({
        let dest = dest.clone();
        move || {
            unpack(
                ChannelReader {
                    rx,
                    buf: Vec::new(),
                    pos: 0,
                },
                &dest,
            )
        }
    });
    let mut failed = None;
    loop {
        match stream.message().await {
            Ok(Some(c)) => {
                if tx.send(c.data).is_err() {
                    break; // the unpacker stopped: its error says why
                }
            }
            Ok(None) => break,
            Err(e) => {
                failed = Some(status_message(e));
                break;
            }
        }
    }
    drop(tx);
    let unpacked = unpack
        .join()
        .map_err(|_| anyhow!("the unpacker panicked"))?;
    if let Some(e) = failed {
        return Err(e.context("the copy broke off; what arrived may be incomplete"));
    }
    unpacked
}

/// Unpacks a tar rooted at the source's base name: into `dest` when it is
/// a directory, else as `dest` itself (via a scratch directory beside it,
/// renamed into place once whole).
fn unpack(reader: impl Read, dest: &Path) -> Result<()> {
    if dest.is_dir() {
        return tar::Archive::new(reader)
            .unpack(dest)
            .with_context(|| format!("unpacking into {}", dest.display()));
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        bail!("{} does not exist: create it first", parent.display());
    }
    let scratch = tempfile::Builder::new()
        .prefix(".berth-cp-")
        .tempdir_in(&parent)
        .with_context(|| format!("writing in {}", parent.display()))?;
    tar::Archive::new(reader)
        .unpack(scratch.path())
        .context("unpacking the archive")?;
    let mut roots = std::fs::read_dir(scratch.path())?;
    let root = match (roots.next(), roots.next()) {
        (Some(r), None) => r?.path(),
        _ => bail!("the archive does not hold exactly one file or directory"),
    };
    if dest.exists() && root.is_dir() {
        bail!("cannot copy a directory onto the file {}", dest.display());
    }
    std::fs::rename(&root, dest).with_context(|| format!("writing {}", dest.display()))?;
    Ok(())
}

async fn upload(client: &Client, src: &str, job: &str, path: &str) -> Result<()> {
    // Into an existing directory, or as a new name in its parent.
    let stat = client
        .jobs()
        .stat_path(StatPathRequest {
            job: job.to_string(),
            path: path.to_string(),
        })
        .await
        .map_err(status_message)?
        .into_inner();
    let local = PathBuf::from(src);
    let (dir, name) = if src == "-" || (stat.exists && stat.is_dir) {
        (path.to_string(), base_name(&local)?)
    } else {
        if stat.exists && local.is_dir() {
            bail!("cannot copy a directory onto the file {job}:{path}");
        }
        let p = Path::new(path);
        let parent = p.parent().map_or("/".into(), |d| d.display().to_string());
        let name = p
            .file_name()
            .ok_or_else(|| anyhow!("{path} names no file"))?
            .to_string_lossy()
            .into_owned();
        (
            if parent.is_empty() {
                ".".into()
            } else {
                parent
            },
            name,
        )
    };
    if src != "-" && !local.exists() {
        bail!("{src}: no such file or directory");
    }
    let (tx, rx) = mpsc::channel::<CopyToInput>(8);
    tx.send(CopyToInput {
        kind: Some(copy_to_input::Kind::Start(CopyToStart {
            job: job.to_string(),
            dir,
        })),
    })
    .await?;
    let packing = std::thread::spawn(move || pack(&local, &name, tx));
    let sent = client
        .jobs()
        .copy_to(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    let packed = packing.join().map_err(|_| anyhow!("the packer panicked"))?;
    sent.map_err(status_message)?;
    packed
}

fn base_name(p: &Path) -> Result<String> {
    let canonical = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    canonical
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| anyhow!("{} names no file", p.display()))
}

/// Writes `src` as a tar rooted at `name` (stdin's tar as it is for `-`)
/// into the upload, in 256 KiB pieces.
fn pack(src: &Path, name: &str, tx: mpsc::Sender<CopyToInput>) -> Result<()> {
    let mut out = Pieces {
        tx,
        buf: Vec::new(),
    };
    if src == Path::new("-") {
        std::io::copy(&mut std::io::stdin().lock(), &mut out)?;
    } else {
        let mut b = tar::Builder::new(&mut out);
        b.follow_symlinks(false);
        if src.is_dir() {
            b.append_dir_all(name, src)
        } else {
            b.append_path_with_name(src, name)
        }
        .with_context(|| format!("reading {}", src.display()))?;
        b.finish()?;
    }
    out.flush()?;
    Ok(())
}

struct Pieces {
    tx: mpsc::Sender<CopyToInput>,
    buf: Vec<u8>,
}

impl Write for Pieces {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 256 << 10 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::take(&mut self.buf);
        self.tx
            .blocking_send(CopyToInput {
                kind: Some(copy_to_input::Kind::Data(data)),
            })
            .map_err(|_| std::io::Error::other("the upload ended (see its error)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_paths_are_job_colon_path() {
        assert_eq!(remote("train:/out"), Some(("train", "/out")));
        assert_eq!(remote("./a:b"), None);
        assert_eq!(remote("/tmp/x:y"), None);
        assert_eq!(remote("dir/a:b"), None);
        assert_eq!(remote("plain"), None);
    }

    /// An archive crafted to escape: `..` and an absolute path. Nothing
    /// may land outside the destination.
    #[test]
    fn entries_that_would_escape_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        let mut raw = Vec::new();
        for name in ["ok/file", "../escaped", "/abs-escaped"] {
            let mut h = tar::Header::new_gnu();
            // Written straight into the header: the tar crate's own path
            // setters refuse such names.
            let bytes = name.as_bytes();
            h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            h.set_size(2);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            raw.extend_from_slice(h.as_bytes());
            let mut data = b"hi".to_vec();
            data.resize(512, 0);
            raw.extend_from_slice(&data);
        }
        raw.extend_from_slice(&[0u8; 1024]);
        let _ = unpack(&raw[..], &dest);
        assert!(dest.join("ok/file").exists());
        assert!(!dir.path().join("escaped").exists());
        assert!(!Path::new("/abs-escaped").exists());
    }
}
