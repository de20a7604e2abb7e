//! `berth build`: checks the request (tag, Dockerfile, FROM images, the
//! owner's right to run RUN steps as root), picks the builder (the FROM
//! images' holders first), moves a FROM image it lacks there, then relays
//! the context to that agent and its output back. Answers the end once the
//! image table lists the result, so a job can run it at once.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Arc;

use berth_proto::v1::{build_progress, BuildOptions, BuildProgress, BuildResult, BuildUpload};
use futures::{Stream, StreamExt};
use tonic::Status;

use super::plan::held;
use crate::core::{agent_client, Controller};
use crate::scheduler::normalize_image;
use crate::{Error, Result};

pub type BuildStream = Pin<Box<dyn Stream<Item = Result<BuildProgress, Status>> + Send>>;

/// The largest Dockerfile accepted (it travels in the first message).
const MAX_DOCKERFILE: usize = 1 << 20;

/// The images a Dockerfile's FROM lines need from the host's store: not
/// `scratch`, not an earlier stage, with `ARG`s declared before the first
/// FROM substituted (`build_args` over their defaults), as docker does.
pub fn from_images(dockerfile: &str, build_args: &HashMap<String, String>) -> Result<Vec<String>> {
    let mut args: HashMap<String, String> = HashMap::new();
    let mut stages: Vec<String> = Vec::new();
    let mut images: Vec<String> = Vec::new();
    let mut seen_from = false;
    for line in logical_lines(dockerfile) {
        let mut words = line.split_whitespace();
        let Some(instr) = words.next() else { continue };
        match instr.to_ascii_uppercase().as_str() {
            "ARG" if !seen_from => {
                for decl in words {
                    let (name, default) = decl.split_once('=').unwrap_or((decl, ""));
                    let value = build_args
                        .get(name)
                        .cloned()
                        .unwrap_or_else(|| default.trim_matches('"').to_string());
                    args.insert(name.to_string(), value);
                }
            }
            "FROM" => {
                seen_from = true;
                let rest: Vec<&str> = words.filter(|w| !w.starts_with("--")).collect();
                let image = rest
                    .first()
                    .map(|i| substitute(i, &args))
                    .filter(|i| !i.is_empty())
                    .ok_or_else(|| {
                        Error::InvalidArgument(format!("Dockerfile: {line:?} names no image"))
                    })?;
                // An earlier stage's name, not an image.
                let stage = stages.contains(&image.to_ascii_lowercase());
                if let [_, as_, name] = rest.as_slice() {
                    if as_.eq_ignore_ascii_case("as") {
                        stages.push(name.to_ascii_lowercase());
                    }
                }
                if image != "scratch" && !stage && !images.contains(&image) {
                    images.push(image);
                }
            }
            _ => {}
        }
    }
    if !seen_from {
        return Err(Error::InvalidArgument(
            "the Dockerfile has no FROM line".into(),
        ));
    }
    Ok(images)
}

/// Lines with `\` continuations joined and comments dropped.
fn logical_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for raw in text.lines() {
        let line = raw.trim();
        if current.is_empty() && (line.starts_with('#') || line.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// `$NAME` and `${NAME}` replaced by the build's ARG values.
fn substitute(word: &str, args: &HashMap<String, String>) -> String {
    let mut out = word.to_string();
    for (k, v) in args {
        out = out
            .replace(&format!("${{{k}}}"), v)
            .replace(&format!("${k}"), v);
    }
    out
}

/// Checks everything a build needs that needs no host: a tag docker
/// accepts, sane build arguments, a Dockerfile of reasonable size.
pub fn check_options(o: &BuildOptions) -> Result<()> {
    let bad = |m: String| Err(Error::InvalidArgument(m));
    let (repo, tag) = match o.tag.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => (o.tag.as_str(), "latest"),
    };
    let repo_ok = !repo.is_empty()
        && repo.len() <= 255
        && repo.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-' | b'/')
        })
        && !repo.starts_with(['.', '-', '/']);
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !repo_ok || !tag_ok {
        return bad(format!(
            "-t {:?}: give NAME[:TAG] in lowercase, e.g. -t lab/train:v2",
            o.tag
        ));
    }
    if o.dockerfile.trim().is_empty() {
        return bad("the Dockerfile is empty".into());
    }
    if o.dockerfile.len() > MAX_DOCKERFILE {
        return bad(format!(
            "the Dockerfile is over {} KiB",
            MAX_DOCKERFILE >> 10
        ));
    }
    if let Some(k) = o
        .build_args
        .keys()
        .find(|k| k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    {
        return bad(format!(
            "--build-arg {k:?}: a name of letters, digits and _"
        ));
    }
    if !o
        .target
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return bad(format!("--target {:?}: a stage name", o.target));
    }
    Ok(())
}

impl Controller {
    /// Where a build of `images` runs: `on` if named (ready, not
    /// cordoned), else the roomiest host holding the most of them (for
    /// twice the context).
    fn build_host(&self, on: &str, images: &[String], context: u64) -> Result<String> {
        if !on.is_empty() {
            self.ready_agent(on)?;
            if self.read(|s| s.cordons.contains_key(on)) {
                return Err(Error::FailedPrecondition(format!(
                    "{on} is cordoned: nothing new starts there (berth node uncordon {on}), or leave out --on"
                )));
            }
            return Ok(on.to_string());
        }
        self.roomiest_host(images, context).ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "no ready host has room for a {} MiB build context (twice that while it builds): free space (berth image gc) or name one with --on HOST",
                context >> 20
            ))
        })
    }

    /// A FROM image no ready host holds: refused before anything is sent.
    fn check_from_images(&self, images: &[String]) -> Result<()> {
        let ready = self.ready_nodes();
        for image in images {
            let somewhere = ready.iter().any(|n| {
                self.telemetry(n)
                    .is_some_and(|t| held(&t.report, image).is_some())
            });
            if !somewhere {
                return Err(Error::FailedPrecondition(format!(
                    "FROM {image}: no ready host has it, and Berth pulls from no registry: load it (berth image load -i FILE) or build it first; `berth images` lists what each host holds"
                )));
            }
        }
        Ok(())
    }
}

/// Runs a build for a caller whose role may run containers as root.
pub async fn run(
    ctl: Arc<Controller>,
    mut upload: tonic::Streaming<BuildUpload>,
) -> std::result::Result<BuildStream, Status> {
    let options = match upload.message().await? {
        Some(BuildUpload {
            options: Some(o), ..
        }) => o,
        _ => {
            return Err(Status::invalid_argument(
                "a build starts with its options (tag, Dockerfile)",
            ))
        }
    };
    check_options(&options)?;
    let images: Vec<String> = from_images(&options.dockerfile, &options.build_args)?
        .iter()
        .map(|i| normalize_image(i))
        .collect();
    ctl.check_from_images(&images)?;
    let node = ctl.build_host(&options.node, &images, options.context_bytes)?;
    let addr = ctl.ready_agent(&node)?;
    tracing::info!(tag = %options.tag, %node, from = ?images, "building");
    let out = async_stream::stream! {
        yield Ok(event(build_progress::Event::Node(node.clone())));
        for image in &images {
            let here = ctl.telemetry(&node).is_some_and(|t| held(&t.report, image).is_some());
            if here {
                continue;
            }
            yield Ok(event(build_progress::Event::Moving(image.clone())));
            if let Err(e) = move_image(&ctl, image, &node).await {
                yield Ok(failed(&options.tag, format!("moving {image} to {node}: {e}")));
                return;
            }
        }
        let mut agent = match agent_client(&ctl.tls, &node, &addr).await {
            Ok(a) => a,
            Err(e) => {
                yield Ok(failed(&options.tag, e.to_string()));
                return;
            }
        };
        let first = BuildUpload {
            options: Some(BuildOptions { node: String::new(), ..options.clone() }),
            context: Vec::new(),
        };
        let context = futures::stream::iter([first]).chain(crate::api::rest(upload));
        let mut progress = match agent.build_image(context).await {
            Ok(p) => p.into_inner(),
            Err(e) => {
                yield Ok(failed(&options.tag, format!("{node}: {}", e.message())));
                return;
            }
        };
        while let Some(item) = progress.next().await {
            match item {
                Ok(BuildProgress { event: Some(build_progress::Event::Result(r)) }) => {
                    if r.error.is_empty() {
                        // Answered once the image table has it.
                        ctl.image_seen(&node, &r.tag).await;
                    }
                    yield Ok(event(build_progress::Event::Result(r)));
                    return;
                }
                Ok(p) => yield Ok(p),
                Err(e) => {
                    yield Ok(failed(&options.tag, format!("{node}: {}", e.message())));
                    return;
                }
            }
        }
        yield Ok(failed(&options.tag, format!("{node} ended the build without a result")));
    };
    Ok(Box::pin(out))
}

fn event(e: build_progress::Event) -> BuildProgress {
    BuildProgress { event: Some(e) }
}

fn failed(tag: &str, error: String) -> BuildProgress {
    event(build_progress::Event::Result(BuildResult {
        image_id: String::new(),
        tag: tag.to_string(),
        error,
    }))
}

/// `berth image push IMAGE --to NODE`, waited for.
async fn move_image(ctl: &Arc<Controller>, image: &str, node: &str) -> Result<()> {
    let plan = ctl.plan_push(image, &[node.to_string()], false)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(super::push::run(ctl.clone(), plan, tx));
    let mut errors = BTreeMap::new();
    while let Some(p) = rx.recv().await {
        if !p.error.is_empty() {
            errors.insert(p.node, p.error);
        }
    }
    if let Some((_, e)) = errors.into_iter().next() {
        return Err(Error::FailedPrecondition(e));
    }
    ctl.image_seen(node, image).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn froms(text: &str) -> Vec<String> {
        from_images(text, &HashMap::new()).unwrap()
    }

    #[test]
    fn from_lines_name_the_images_a_build_needs() {
        assert_eq!(
            froms("FROM berth/workload:latest\nRUN echo built > /b\n"),
            ["berth/workload:latest"]
        );
        // Stages and scratch need nothing from the store.
        let multi =
            "FROM base:1 AS build\nRUN make\nFROM scratch\nCOPY --from=build /x /x\nFROM build\n";
        assert_eq!(froms(multi), ["base:1"]);
        assert_eq!(
            froms("# c\nFROM --platform=linux/amd64 a:1 \\\n  AS s\n"),
            ["a:1"]
        );
        // ARGs before the first FROM, build args over their defaults.
        let args = "ARG BASE=lab/py\nARG V=3\nFROM ${BASE}:$V\n";
        assert_eq!(froms(args), ["lab/py:3"]);
        let given = HashMap::from([("V".to_string(), "4".to_string())]);
        assert_eq!(from_images(args, &given).unwrap(), ["lab/py:4"]);
        assert!(from_images("RUN true\n", &HashMap::new()).is_err());
        assert!(from_images("FROM\n", &HashMap::new()).is_err());
    }

    #[test]
    fn options_are_checked_before_any_host_is_asked() {
        let ok = BuildOptions {
            tag: "lab/train:v2".into(),
            dockerfile: "FROM a\n".into(),
            ..Default::default()
        };
        check_options(&ok).unwrap();
        for (tag, df) in [("Bad:1", "FROM a"), ("lab/x:", "FROM a"), ("x", " ")] {
            let o = BuildOptions {
                tag: tag.into(),
                dockerfile: df.into(),
                ..Default::default()
            };
            assert!(check_options(&o).is_err(), "{tag}");
        }
        let mut bad_arg = ok.clone();
        bad_arg.build_args.insert("A B".into(), "1".into());
        assert!(check_options(&bad_arg).is_err());
    }
}
