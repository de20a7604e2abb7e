//! `berth submit jobs.toml`: several jobs from one file, each with every
//! option `berth run` takes (the same names: `gpus = 2`, `shm_size = "8g"`,
//! `volumes = ["/data:/data:ro"]`, `env = { LR = "3e-4" }`, ...).
//!
//! ```toml
//! [[job]]
//! name = "prep"
//! image = "my-train:v3"
//! command = ["python", "prep.py"]
//!
//! [[job]]
//! name = "train"
//! image = "my-train:v3"
//! command = "python train.py --epochs 10"   # a string runs under sh -c
//! gpus = 2
//! shm_size = "8g"
//! volumes = ["/data/imagenet:/data:ro"]
//! env = { LR = "3e-4" }
//! ```
//!
//! Every job is turned into `berth run` flags and parsed by the same code,
//! then checked by the controller (a dry run of each) before the first one
//! is submitted: a file with a bad job submits nothing.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use berth_proto::v1::{JobSpec, SubmitJobRequest, WaitJobRequest};
use clap::Parser;
use serde_json::json;

use super::run;
use crate::client::{status_message, Client};
use crate::output::Format;

#[derive(clap::Args)]
pub struct Args {
    /// A TOML file with one or more [[job]] tables.
    file: PathBuf,
    /// Check every job and say where each would be placed; submit nothing.
    #[arg(long)]
    dry_run: bool,
    /// Wait for every job and exit with the first non-zero exit code.
    #[arg(long)]
    wait: bool,
}

/// `berth run`'s flags, parsed from a job table.
#[derive(clap::Parser)]
#[command(no_binary_name = true)]
struct RunLine {
    #[command(flatten)]
    args: run::Args,
}

/// Keys that are not `berth run` flags, or are taken care of here.
const NOT_FLAGS: [&str; 3] = ["image", "command", "detach"];

/// One job table as `berth run` arguments.
fn argv(job: &toml::Table) -> Result<Vec<String>> {
    let image = job
        .get("image")
        .and_then(|v| v.as_str())
        .ok_or_else(|| anyhow!("image = \"...\" is required"))?;
    if job.contains_key("detach") || job.contains_key("dry_run") {
        bail!("detach and dry_run are options of berth submit, not of a job");
    }
    let mut argv = Vec::new();
    for (key, value) in job.iter().filter(|(k, _)| !NOT_FLAGS.contains(&k.as_str())) {
        let flag = format!("--{}", key.replace('_', "-"));
        let flag = match flag.as_str() {
            // The plural names read better in a file.
            "--volumes" => "--volume".to_string(),
            "--ports" => "--publish".to_string(),
            "--constraints" => "--constraint".to_string(),
            _ => flag,
        };
        match value {
            toml::Value::Boolean(true) => argv.push(flag),
            toml::Value::Boolean(false) => {}
            toml::Value::Array(items) => {
                for item in items {
                    argv.push(flag.clone());
                    argv.push(scalar(item).with_context(|| format!("in {key}"))?);
                }
            }
            toml::Value::Table(t) => {
                for (k, v) in t {
                    argv.push(flag.clone());
                    argv.push(format!(
                        "{k}={}",
                        scalar(v).with_context(|| format!("in {key}"))?
                    ));
                }
            }
            v => {
                argv.push(flag);
                argv.push(scalar(v).with_context(|| format!("in {key}"))?);
            }
        }
    }
    argv.push(image.to_string());
    match job.get("command") {
        None => {}
        Some(toml::Value::String(s)) => argv.extend(["sh".into(), "-c".into(), s.clone()]),
        Some(toml::Value::Array(items)) => {
            for i in items {
                argv.push(scalar(i).context("in command")?);
            }
        }
        Some(_) => bail!("command is a string (run by sh -c) or a list of strings"),
    }
    Ok(argv)
}

/// clap's first line, without its "error: " (the rest is usage for a
/// command line, not for a file).
fn clap_error(e: clap::Error) -> anyhow::Error {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    anyhow!("{}", first.trim_start_matches("error: "))
}

fn scalar(v: &toml::Value) -> Result<String> {
    Ok(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        other => bail!("expected a string or a number, found {}", other.type_str()),
    })
}

/// Every job of the file, as (name, spec); any error names the job.
fn jobs(text: &str) -> Result<Vec<(String, JobSpec)>> {
    let doc: toml::Table = toml::from_str(text)?;
    let tables = match doc.get("job") {
        Some(toml::Value::Array(a)) => a.clone(),
        _ => bail!("no [[job]] tables in the file"),
    };
    if let Some(other) = doc.keys().find(|k| *k != "job") {
        bail!("unknown top-level key {other:?}: jobs go in [[job]] tables");
    }
    tables
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let t = t
                .as_table()
                .ok_or_else(|| anyhow!("job {}: not a table", i + 1))?;
            let label = t
                .get("name")
                .and_then(|n| n.as_str())
                .map_or(format!("job {}", i + 1), |n| format!("job {n:?}"));
            let line = argv(t)
                .and_then(|a| RunLine::try_parse_from(a).map_err(clap_error))
                .with_context(|| label.clone())?;
            let spec = run::job_spec(&line.args).with_context(|| label.clone())?;
            Ok((line.args.name().unwrap_or_default(), spec))
        })
        .collect()
}

pub async fn run(client: &Client, args: Args, format: Format) -> Result<i32> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let jobs =
        jobs(&text).with_context(|| format!("{}: nothing was submitted", args.file.display()))?;
    if args.dry_run {
        for (name, spec) in jobs {
            super::explain::dry_run(client, spec, name, format).await?;
        }
        return Ok(0);
    }
    // The controller's checks for every job first: all or nothing.
    for (name, spec) in &jobs {
        let r = client
            .jobs()
            .submit_job(SubmitJobRequest {
                spec: Some(spec.clone()),
                name: name.clone(),
                request_id: String::new(),
                dry_run: true,
            })
            .await;
        if let Err(e) = r {
            bail!("job {:?}: {}; nothing was submitted", name, e.message());
        }
    }
    let mut submitted = Vec::new();
    for (name, spec) in jobs {
        let request = SubmitJobRequest {
            spec: Some(spec),
            name,
            request_id: format!("{:032x}", rand::random::<u128>()),
            dry_run: false,
        };
        let r = client
            .retry(|c| {
                let request = request.clone();
                async move { c.jobs().submit_job(request).await }
            })
            .await?;
        let id = if r.group_id.is_empty() {
            r.job.clone().unwrap_or_default().id
        } else {
            r.group_id.clone()
        };
        let name = r.job.unwrap_or_default().name;
        if format == Format::Table {
            println!("{id}\t{name}");
        }
        submitted.push((id, name));
    }
    if format == Format::Json {
        let v: Vec<_> = submitted
            .iter()
            .map(|(id, name)| json!({"id": id, "name": name}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    if !args.wait {
        return Ok(0);
    }
    let mut code = 0;
    for (id, _) in &submitted {
        let done = client
            .jobs()
            .wait_job(WaitJobRequest { job: id.clone() })
            .await
            .map_err(status_message)?
            .into_inner();
        if code == 0 && done.exit_code != 0 {
            code = done.exit_code;
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_table_is_berth_run_flags() {
        let text = r#"
            [[job]]
            name = "train"
            image = "my-train:v3"
            command = "python train.py"
            gpus = 2
            shm_size = "8g"
            volumes = ["/data:/data:ro"]
            ports = ["16006:6006"]
            env = { LR = "3e-4" }
            exclusive = true

            [[job]]
            image = "busybox"
            command = ["echo", "hi"]
        "#;
        let jobs = jobs(text).unwrap();
        let (name, spec) = &jobs[0];
        assert_eq!(name, "train");
        assert_eq!((spec.gpus, spec.shm_size_bytes), (2, 8 << 30));
        assert_eq!(spec.command, vec!["sh", "-c", "python train.py"]);
        assert_eq!(spec.env, vec!["LR=3e-4"]);
        assert_eq!(spec.mounts[0].target, "/data");
        assert_eq!(spec.ports[0].host_port, 16006);
        assert!(spec.exclusive);
        assert_eq!(jobs[1].1.command, vec!["echo", "hi"]);
    }

    #[test]
    fn bad_files_say_which_job_and_what() {
        let err = |t: &str| format!("{:#}", jobs(t).unwrap_err());
        assert!(err("[[job]]\nname = \"a\"\n").contains("image"));
        let e = err("[[job]]\nname = \"a\"\nimage = \"x\"\ngpuz = 2\n");
        assert!(e.contains("job \"a\"") && e.contains("gpuz"), "{e}");
        let e = err("[[job]]\nimage = \"x\"\nshm_size = \"8q\"\n");
        assert!(e.contains("job 1"), "{e}");
        assert!(err("name = 1").contains("[[job]]"));
        assert!(err("[[job]]\nimage = \"x\"\ndetach = true\n").contains("options of berth submit"));
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Any job file gets jobs or an error, never a panic; what is
            /// accepted names an image.
            #[test]
            fn any_job_file_gets_an_answer(body in "(\\[\\[job\\]\\]\n)?([a-z_-]{1,10} = (\"[a-z/:.0-9-]{0,20}\"|[0-9]{1,4}|true|\\[\"[a-z0-9:/]{0,10}\"\\])\n){0,6}") {
                if let Ok(jobs) = jobs(&body) {
                    for (_, spec) in jobs {
                        prop_assert!(!spec.image.is_empty());
                    }
                }
            }
        }
    }
}
