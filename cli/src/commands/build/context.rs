//! The build context as docker's CLI makes it: the directory as a tar,
//! less what `.dockerignore` excludes, plus the Dockerfile at the path
//! the builder checks (`berth_proto::image_ref::BUILD_DOCKERFILE`).
//!
//! `.dockerignore` as docker reads it: a pattern per line (`#` comments),
//! relative to the context root (a leading `/` or `./` is dropped), `*`
//! and `?` within one path element, `**` across any number; a pattern
//! that matches a directory excludes what is under it; `!` re-includes;
//! the last pattern that matches a path decides.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use globset::GlobMatcher;

pub struct Ignore {
    rules: Vec<(GlobMatcher, bool)>,
}

impl Ignore {
    pub fn parse(text: &str) -> Result<Ignore> {
        let mut rules = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (pattern, include) = match line.strip_prefix('!') {
                Some(p) => (p.trim(), true),
                None => (line, false),
            };
            let pattern = clean(pattern);
            if pattern.is_empty() {
                continue;
            }
            let glob = globset::GlobBuilder::new(&pattern)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .with_context(|| format!(".dockerignore: bad pattern {line:?}"))?;
            rules.push((glob.compile_matcher(), include));
        }
        Ok(Ignore { rules })
    }

    pub fn none() -> Ignore {
        Ignore { rules: Vec::new() }
    }

    /// Whether `rel` (a path relative to the root, '/'-separated) is left
    /// out: the last rule matching it or a directory above it decides.
    pub fn excludes(&self, rel: &str) -> bool {
        let mut excluded = false;
        for (glob, include) in &self.rules {
            if matches_or_parent(glob, rel) {
                excluded = !include;
            }
        }
        excluded
    }
}

fn matches_or_parent(glob: &GlobMatcher, rel: &str) -> bool {
    if glob.is_match(rel) {
        return true;
    }
    let mut at = rel;
    while let Some((parent, _)) = at.rsplit_once('/') {
        if glob.is_match(parent) {
            return true;
        }
        at = parent;
    }
    false
}

/// filepath.Clean of a pattern, relative to the root.
fn clean(p: &str) -> String {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    parts.join("/")
}

/// Writes the context of `dir` as a tar to `out`, with `dockerfile`'s
/// text at `dockerfile_path` in it. Returns the files written. Symlinks
/// go in as links (docker's CLI does the same); the daemon resolves them
/// inside the context only.
pub fn write(
    dir: &Path,
    dockerfile: &str,
    dockerfile_path: &str,
    out: impl Write,
) -> Result<usize> {
    let ignore = match std::fs::read_to_string(dir.join(".dockerignore")) {
        Ok(text) => Ignore::parse(&text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ignore::none(),
        Err(e) => return Err(e).context("reading .dockerignore"),
    };
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    let mut files = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d)
            .with_context(|| format!("reading {}", d.display()))?
            .collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let rel = path
                .strip_prefix(dir)
                .expect("under the context")
                .to_string_lossy()
                .replace('\\', "/");
            if rel == dockerfile_path {
                bail!("the context already has a file named {dockerfile_path}: rename it");
            }
            if ignore.excludes(&rel) {
                continue;
            }
            let kind = e.file_type()?;
            if kind.is_dir() {
                tar.append_dir(&rel, &path)
                    .with_context(|| format!("adding {rel}"))?;
                stack.push(path);
            } else {
                tar.append_path_with_name(&path, &rel)
                    .with_context(|| format!("adding {rel}"))?;
                files += 1;
            }
        }
    }
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, dockerfile_path, dockerfile.as_bytes())?;
    tar.finish()?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_reads_as_docker_reads_it() {
        let i = Ignore::parse(
            "# build output\n/target\n*.log\n**/__pycache__\ndata/*\n!data/keep.txt\n",
        )
        .unwrap();
        assert!(i.excludes("target"));
        assert!(i.excludes("target/debug/x"), "under an excluded directory");
        assert!(i.excludes("run.log"));
        assert!(!i.excludes("logs/run.log"), "* stays within one element");
        assert!(i.excludes("src/pkg/__pycache__/m.pyc"));
        assert!(i.excludes("data/big.bin"));
        assert!(!i.excludes("data/keep.txt"), "! re-includes");
        assert!(!i.excludes("src/train.py"));
    }

    #[test]
    fn the_context_leaves_out_what_is_ignored_and_carries_the_dockerfile() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::create_dir_all(dir.path().join("target")).unwrap();
        std::fs::write(dir.path().join("src/train.py"), "print(1)").unwrap();
        std::fs::write(dir.path().join("target/huge.bin"), "x").unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "target\n").unwrap();
        let mut out = Vec::new();
        let files = write(dir.path(), "FROM a\n", ".berth.Dockerfile", &mut out).unwrap();
        assert_eq!(files, 2, ".dockerignore and src/train.py");
        let mut names: Vec<String> = tar::Archive::new(&out[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().to_string())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [".berth.Dockerfile", ".dockerignore", "src", "src/train.py"]
        );
    }
}
