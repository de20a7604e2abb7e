//! A simulated GPU inventory for hosts without NVML.
//!
//! Spec: `N` (N × "Simulated GPU" with 24 GiB) or groups `N:MODEL[:MEM]`
//! separated by commas, e.g. `2:A100-SXM4-80GB:80G,2:RTX-4090:24G`.
//!
//! Foreign-process hook: when a foreign file is given, each of its lines
//! `INDEX PID NAME [MEM]` is a process Berth did not start running on that
//! GPU. It is re-read on every sample, so a test can make a GPU busy (write a
//! line) and free again (remove it) while the agent runs.

use std::path::PathBuf;

use berth_proto::v1::GpuProcess;

use super::{GpuBackend, GpuSample};
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct SimGpus {
    gpus: Vec<(String, u64)>,
    uuid_seed: String,
    foreign_file: Option<PathBuf>,
}

impl SimGpus {
    /// `uuid_seed` (the node name) makes uuids stable across agent restarts
    /// and distinct across nodes.
    pub fn new(
        gpus: Vec<(String, u64)>,
        uuid_seed: &str,
        foreign_file: Option<PathBuf>,
    ) -> SimGpus {
        SimGpus {
            gpus,
            uuid_seed: uuid_seed.to_string(),
            foreign_file,
        }
    }

    pub fn len(&self) -> usize {
        self.gpus.len()
    }

    pub fn is_empty(&self) -> bool {
        self.gpus.is_empty()
    }

    fn foreign(&self) -> Vec<(u32, GpuProcess)> {
        let Some(path) = &self.foreign_file else {
            return Vec::new();
        };
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let index = f.next()?.parse().ok()?;
                let pid = f.next()?.parse().ok()?;
                let name = f.next().unwrap_or("unknown").to_string();
                let used_memory_bytes = f
                    .next()
                    .and_then(|m| berth_proto::size::parse(m).ok())
                    .unwrap_or(0);
                Some((
                    index,
                    GpuProcess {
                        pid,
                        name,
                        used_memory_bytes,
                    },
                ))
            })
            .collect()
    }
}

impl GpuBackend for SimGpus {
    fn kind(&self) -> berth_proto::internal::v1::GpuBackend {
        berth_proto::internal::v1::GpuBackend::Simulated
    }

    fn sample(&self) -> Result<Vec<GpuSample>> {
        let foreign = self.foreign();
        Ok(self
            .gpus
            .iter()
            .enumerate()
            .map(|(i, (model, mem))| {
                let index = i as u32;
                let processes: Vec<GpuProcess> = foreign
                    .iter()
                    .filter(|(gi, _)| *gi == index)
                    .map(|(_, p)| p.clone())
                    .collect();
                GpuSample {
                    // Simulated GPUs have no topology: adjacent indexes count as close.
                    topology_group: String::new(),
                    // Nor CPU affinity: their jobs are not pinned.
                    cpu_affinity: String::new(),
                    index,
                    uuid: sim_uuid(&self.uuid_seed, index),
                    model: model.clone(),
                    memory_total_bytes: *mem,
                    memory_used_bytes: processes
                        .iter()
                        .map(|p| p.used_memory_bytes)
                        .sum::<u64>()
                        .min(*mem),
                    utilization_percent: if processes.is_empty() { 0 } else { 100 },
                    // Plausible idle and busy figures, so dashboards have
                    // something to draw; nothing decides on them.
                    temperature_celsius: if processes.is_empty() { 34 } else { 71 },
                    power_milliwatts: if processes.is_empty() {
                        61_000
                    } else {
                        296_000
                    },
                    processes,
                }
            })
            .collect())
    }
}

/// Parses `--fake-gpus`.
pub fn parse_spec(spec: &str) -> Result<Vec<(String, u64)>> {
    let bad = |why: &str| {
        Error::Config(format!(
            "--fake-gpus {spec:?}: {why}; expected N or N:MODEL[:MEM],..."
        ))
    };
    let mut out = Vec::new();
    for group in spec.split(',').map(str::trim).filter(|g| !g.is_empty()) {
        let mut parts = group.split(':');
        let n: usize = parts
            .next()
            .unwrap_or("")
            .parse()
            .map_err(|_| bad("count is not a number"))?;
        let model = parts.next().unwrap_or("Simulated GPU").to_string();
        let mem = match parts.next() {
            Some(m) => berth_proto::size::parse(m).map_err(|_| bad("bad memory size"))?,
            None => 24 << 30,
        };
        if parts.next().is_some() {
            return Err(bad("too many ':' fields"));
        }
        out.extend(std::iter::repeat_n((model, mem), n));
    }
    if out.len() > 64 {
        return Err(bad("more than 64 GPUs on one host"));
    }
    Ok(out)
}

/// A stable, uuid-shaped id: FNV-1a of (seed, index), printed like NVML's.
fn sim_uuid(seed: &str, index: u32) -> String {
    let fnv = |salt: u64| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt;
        for b in seed.bytes().chain(index.to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    };
    let (a, b) = (fnv(1), fnv(2));
    format!(
        "GPU-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_forms() {
        assert_eq!(parse_spec("2").unwrap().len(), 2);
        let g = parse_spec("1:A100:80G,2:RTX4090:24g").unwrap();
        assert_eq!(g[0], ("A100".to_string(), 80 << 30));
        assert_eq!(g[2].0, "RTX4090");
        assert!(parse_spec("x").is_err());
        assert!(parse_spec("1:A:80Q").is_err());
    }

    #[test]
    fn uuids_are_stable_and_distinct() {
        let a = SimGpus::new(parse_spec("2").unwrap(), "node-a", None)
            .sample()
            .unwrap();
        let a2 = SimGpus::new(parse_spec("2").unwrap(), "node-a", None)
            .sample()
            .unwrap();
        let b = SimGpus::new(parse_spec("2").unwrap(), "node-b", None)
            .sample()
            .unwrap();
        assert_eq!(a[0].uuid, a2[0].uuid);
        assert_ne!(a[0].uuid, a[1].uuid);
        assert_ne!(a[0].uuid, b[0].uuid);
        assert!(
            a[0].uuid.starts_with("GPU-") && a[0].uuid.len() == 40,
            "{}",
            a[0].uuid
        );
    }

    #[test]
    fn foreign_file_marks_processes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("foreign");
        std::fs::write(&f, "# index pid name mem\n1 4242 jupyter 2G\n").unwrap();
        let sim = SimGpus::new(parse_spec("2").unwrap(), "n", Some(f.clone()));
        let s = sim.sample().unwrap();
        assert!(s[0].processes.is_empty());
        assert_eq!(s[1].processes[0].pid, 4242);
        assert_eq!(s[1].memory_used_bytes, 2 << 30);
        std::fs::write(&f, "").unwrap();
        assert!(sim.sample().unwrap()[1].processes.is_empty());
    }
}
