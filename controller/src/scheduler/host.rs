//! A host's resources beside its GPUs: CPU and memory held for jobs, and
//! host ports Berth picks. What a job holds is decided here, in the pass,
//! and written into its placement: the state machine only re-checks it, so
//! the controllers' settings (`HostPolicy`) never need to be replicated.

use super::{NodeView, QueuedJob};
use crate::state::norm_proto;

/// What a job without `--cpus` (or `-m`) holds, per whole GPU it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PerGpu {
    /// The host's total divided by its GPUs (`auto`): eight 1-GPU jobs on
    /// an 8-GPU host share its cores evenly, and a job asking more by
    /// `--cpus` waits rather than starves them.
    #[default]
    Share,
    /// This much per GPU (thousandths of a core, or bytes).
    Fixed(u64),
}

impl PerGpu {
    /// `auto`, or a number parsed by `fixed`.
    pub fn parse(s: &str, fixed: impl Fn(&str) -> Option<u64>) -> Option<PerGpu> {
        if s == "auto" {
            Some(PerGpu::Share)
        } else {
            fixed(s).map(PerGpu::Fixed)
        }
    }

    fn per_gpu(self, total: u64, gpus: usize) -> u64 {
        match self {
            PerGpu::Share => total / gpus.max(1) as u64,
            PerGpu::Fixed(n) => n,
        }
    }
}

/// The controllers' settings for host resources (`--host-ports`,
/// `--cpus-per-gpu`, `--memory-per-gpu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostPolicy {
    /// Inclusive range Berth picks host ports from (`-p 8080`, `-P`, a
    /// gang's rendezvous port).
    pub ports: (u32, u32),
    pub cpus_per_gpu: PerGpu,
    pub memory_per_gpu: PerGpu,
}

/// Kubernetes' NodePort range: above most services' fixed ports and below
/// Linux's ephemeral range (32768 on).
pub const DEFAULT_HOST_PORTS: (u32, u32) = (30000, 32767);

impl Default for HostPolicy {
    fn default() -> Self {
        HostPolicy {
            ports: DEFAULT_HOST_PORTS,
            cpus_per_gpu: PerGpu::Share,
            memory_per_gpu: PerGpu::Share,
        }
    }
}

/// The controller's flags for `HostPolicy` (`berth-controller`, `berth dev`).
#[derive(clap::Args, Debug, Clone)]
pub struct HostArgs {
    /// Host ports Berth picks for `-p CONTAINER`, `-P` and a gang's
    /// rendezvous port: FIRST-LAST.
    #[arg(long, default_value = "30000-32767")]
    pub host_ports: String,
    /// CPUs a job without --cpus holds per GPU it gets: auto (the host's
    /// cores divided by its GPUs) or a number (e.g. 4, 0.5; 0: none).
    #[arg(long, default_value = "auto")]
    pub cpus_per_gpu: String,
    /// Memory a job without -m holds per GPU it gets: auto (the host's
    /// memory divided by its GPUs) or a size (e.g. 32g; 0: none).
    #[arg(long, default_value = "auto")]
    pub memory_per_gpu: String,
}

impl HostArgs {
    pub fn policy(&self) -> Result<HostPolicy, String> {
        let ports = self
            .host_ports
            .split_once('-')
            .and_then(|(a, b)| Some((a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?)))
            .filter(|(a, b)| *a >= 1 && a <= b && *b <= 65535)
            .ok_or_else(|| {
                format!(
                    "--host-ports {:?}: give FIRST-LAST within 1-65535, e.g. 30000-32767",
                    self.host_ports
                )
            })?;
        let cpus_per_gpu = PerGpu::parse(&self.cpus_per_gpu, |s| {
            let cpus: f64 = s.parse().ok()?;
            (cpus.is_finite() && cpus >= 0.0).then(|| (cpus * 1000.0).round() as u64)
        })
        .ok_or_else(|| {
            format!(
                "--cpus-per-gpu {:?}: give auto or a number of CPUs, e.g. 4 or 0.5",
                self.cpus_per_gpu
            )
        })?;
        let memory_per_gpu =
            PerGpu::parse(&self.memory_per_gpu, |s| berth_proto::size::parse(s).ok()).ok_or_else(
                || {
                    format!(
                        "--memory-per-gpu {:?}: give auto or a size, e.g. 32g",
                        self.memory_per_gpu
                    )
                },
            )?;
        Ok(HostPolicy {
            ports,
            cpus_per_gpu,
            memory_per_gpu,
        })
    }
}

/// (thousandths of a core, bytes) `job` holds on `node` with `gpus` whole
/// GPUs there: its own `--cpus` / `-m`, else the per-GPU default. A host
/// that reported no CPU or memory counts none.
pub fn reservation(
    job: &QueuedJob,
    node: &NodeView,
    gpus: usize,
    policy: &HostPolicy,
) -> (u64, u64) {
    let default = |per: PerGpu, total: u64| {
        if total == 0 || gpus == 0 || node.gpus.is_empty() {
            0
        } else {
            per.per_gpu(total, node.gpus.len()) * gpus as u64
        }
    };
    let cpu = if job.millicpus > 0 {
        job.millicpus
    } else {
        default(policy.cpus_per_gpu, node.millicpus)
    };
    let mem = if job.memory_bytes > 0 {
        job.memory_bytes
    } else {
        default(policy.memory_per_gpu, node.memory_bytes)
    };
    (cpu, mem)
}

/// Whether `node` has room for a reservation (a host that reported no
/// CPU or memory is not counted).
pub fn room_for(node: &NodeView, (cpu, mem): (u64, u64)) -> Result<(), Short> {
    if node.millicpus > 0 && node.millicpus_held + cpu > node.millicpus {
        return Err(Short::Cpu);
    }
    if node.memory_bytes > 0 && node.memory_held + mem > node.memory_bytes {
        return Err(Short::Memory);
    }
    Ok(())
}

/// What a host lacks for a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Short {
    Cpu,
    Memory,
    Ports,
    /// Its user's CPU or memory quota.
    Quota,
}

/// The lowest free host ports in the range, one per protocol in `protos`.
pub fn pick_ports(node: &NodeView, protos: &[String], range: (u32, u32)) -> Option<Vec<u32>> {
    let mut picked: Vec<(u32, String)> = Vec::with_capacity(protos.len());
    for proto in protos {
        let proto = norm_proto(proto);
        let port = (range.0..=range.1).find(|p| {
            !node.used_ports.contains(&(*p, proto.clone()))
                && !picked.contains(&(*p, proto.clone()))
        })?;
        picked.push((port, proto));
    }
    Some(picked.into_iter().map(|(p, _)| p).collect())
}

/// Whether `job` fits `node` beside its GPUs: ports to pick, CPU, memory,
/// and within `limit`, what its user's CPU and memory quota has left for
/// one task.
pub fn fits(
    job: &QueuedJob,
    node: &NodeView,
    gpus: usize,
    policy: &HostPolicy,
    limit: (u64, u64),
) -> Result<(), Short> {
    if !job.pick_ports.is_empty() && pick_ports(node, &job.pick_ports, policy.ports).is_none() {
        return Err(Short::Ports);
    }
    let held = reservation(job, node, gpus, policy);
    room_for(node, held)?;
    if held.0 > limit.0 || held.1 > limit.1 {
        return Err(Short::Quota);
    }
    Ok(())
}

/// No quota: nothing limits a task but its host.
pub const NO_LIMIT: (u64, u64) = (u64::MAX, u64::MAX);

#[cfg(test)]
mod tests {
    use super::*;

    fn node(cpus: u64, mem: u64, gpus: usize) -> NodeView {
        NodeView {
            millicpus: cpus,
            memory_bytes: mem,
            gpus: vec![Default::default(); gpus],
            ..Default::default()
        }
    }

    #[test]
    fn reservations_default_to_the_hosts_share_per_gpu() {
        let n = node(32_000, 256 << 30, 8);
        let p = HostPolicy::default();
        let one_gpu = QueuedJob {
            gpus: 1,
            ..Default::default()
        };
        assert_eq!(reservation(&one_gpu, &n, 1, &p), (4_000, 32 << 30));
        let asks = QueuedJob {
            gpus: 1,
            millicpus: 16_000,
            ..Default::default()
        };
        assert_eq!(reservation(&asks, &n, 1, &p).0, 16_000);
        // A CPU-only job without --cpus holds nothing.
        assert_eq!(reservation(&QueuedJob::default(), &n, 0, &p), (0, 0));
        let fixed = HostPolicy {
            cpus_per_gpu: PerGpu::Fixed(2_000),
            ..p
        };
        assert_eq!(reservation(&one_gpu, &n, 1, &fixed).0, 2_000);
        // Eight 1-GPU jobs asking 16 cores each: the third does not fit.
        let mut n = n;
        n.millicpus_held = 32_000;
        assert_eq!(room_for(&n, (16_000, 0)), Err(Short::Cpu));
        // A host that reported nothing is not counted.
        assert_eq!(room_for(&node(0, 0, 8), (1 << 40, 1 << 40)), Ok(()));
    }

    #[test]
    fn picked_ports_are_the_lowest_free_per_protocol() {
        let mut n = node(0, 0, 0);
        n.used_ports.insert((30000, "tcp".into()));
        let got = pick_ports(
            &n,
            &["tcp".into(), "tcp".into(), "udp".into()],
            (30000, 30010),
        );
        assert_eq!(got, Some(vec![30001, 30002, 30000]));
        assert_eq!(
            pick_ports(&n, &["tcp".into(), "tcp".into()], (30000, 30001)),
            None
        );
    }
}
