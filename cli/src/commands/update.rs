//! `berth update [--memory SIZE] [--cpus N] [--restart POLICY] JOB...`:
//! `docker update` cluster-wide. Limits change in the running container
//! (the daemon is asked first, so a refusal changes nothing); the restart
//! policy is Berth's. What docker cannot change live is refused with what
//! to do instead.

use anyhow::{bail, Result};
use berth_proto::v1::UpdateJobRequest;

use crate::client::Client;
use crate::output::Format;
use crate::spec;

#[derive(clap::Args)]
pub struct Args {
    /// New memory limit, e.g. 32g (docker update -m); swap as much again.
    #[arg(short = 'm', long)]
    memory: Option<String>,
    /// New CPU limit in CPUs, e.g. 4 or 1.5 (docker update --cpus).
    #[arg(long)]
    cpus: Option<String>,
    /// New restart policy: no, on-failure[:N], always, unless-stopped.
    #[arg(long)]
    restart: Option<String>,
    // What a container cannot change live: accepted only to say so.
    #[arg(long, hide = true)]
    gpus: Option<String>,
    #[arg(short = 'v', long = "volume", hide = true)]
    volume: Option<String>,
    #[arg(short = 'p', long = "publish", hide = true)]
    publish: Option<String>,
    #[arg(short = 'e', long = "env", hide = true)]
    env: Option<String>,
    #[arg(long, hide = true)]
    shm_size: Option<String>,
    /// Jobs (id, id prefix or name; a group's id or name updates its tasks).
    #[arg(required = true)]
    jobs: Vec<String>,
}

/// Refuses what docker cannot change in a live container, saying what to do.
fn refuse_fixed(args: &Args) -> Result<()> {
    let fixed = [
        ("GPUs", args.gpus.is_some(), "--gpus N"),
        ("mounts", args.volume.is_some(), "-v SRC:DST"),
        ("published ports", args.publish.is_some(), "-p HOST:CTR"),
        ("the environment", args.env.is_some(), "-e KEY=VALUE"),
        (
            "/dev/shm's size",
            args.shm_size.is_some(),
            "--shm-size SIZE",
        ),
    ];
    if let Some((what, _, flag)) = fixed.iter().find(|f| f.1) {
        bail!(
            "{what} cannot change in a running container (docker cannot either): \
             stop the job and run it again with {flag} (berth stop JOB; berth run {flag} ...)"
        );
    }
    if args.memory.is_none() && args.cpus.is_none() && args.restart.is_none() {
        bail!("nothing to update: give --memory, --cpus or --restart");
    }
    Ok(())
}

pub async fn run(client: &Client, args: Args, format: Format) -> Result<()> {
    refuse_fixed(&args)?;
    let memory_bytes = args
        .memory
        .as_deref()
        .map(spec::memory)
        .transpose()?
        .unwrap_or(0);
    let nano_cpus = args
        .cpus
        .as_deref()
        .map(spec::cpus)
        .transpose()?
        .unwrap_or(0);
    let mut updated = Vec::new();
    let mut failed = 0;
    for job in &args.jobs {
        let request = UpdateJobRequest {
            job: job.clone(),
            memory_bytes,
            nano_cpus,
            restart: args.restart.clone().unwrap_or_default(),
        };
        match client.jobs().update_job(request).await {
            Ok(r) => {
                let jobs = r.into_inner().jobs;
                if format == Format::Table {
                    println!("{job}");
                }
                updated.extend(jobs);
            }
            Err(e) => {
                eprintln!("berth: {job}: {}", e.message());
                failed += 1;
            }
        }
    }
    if format == Format::Json {
        let v: Vec<_> = updated.iter().map(crate::output::job_json).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    }
    if failed > 0 {
        bail!("{failed} of {} jobs could not be updated", args.jobs.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn refusal(line: &[&str]) -> String {
        let cli =
            Cli::try_parse_from(std::iter::once("update").chain(line.iter().copied())).unwrap();
        refuse_fixed(&cli.args).unwrap_err().to_string()
    }

    #[test]
    fn what_cannot_change_live_is_refused_with_what_to_do() {
        let m = refusal(&["--gpus", "2", "job"]);
        assert!(
            m.starts_with("GPUs cannot change") && m.contains("berth run --gpus N"),
            "{m}"
        );
        let m = refusal(&["-v", "/a:/b", "job"]);
        assert!(m.starts_with("mounts cannot change"), "{m}");
        assert!(refusal(&["job"]).starts_with("nothing to update"));
        let ok = Cli::try_parse_from(["update", "--memory", "1g", "job"]).unwrap();
        assert!(refuse_fixed(&ok.args).is_ok());
    }
}
