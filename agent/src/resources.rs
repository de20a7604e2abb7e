//! The host's CPU and memory as the scheduler counts them, its NUMA
//! nodes, and the CPU set a job's container is pinned to (the CPUs NVML
//! says are closest to its GPUs, which docker leaves to the user).

use std::collections::BTreeSet;

/// `berth-agent` flags for what this host offers beside its GPUs.
#[derive(clap::Args, Debug, Clone, Default, PartialEq)]
pub struct HostResources {
    /// CPUs the scheduler may hand out here (e.g. 30 to keep two for the
    /// system). Default: every CPU this process may run on.
    #[arg(long = "cpus", value_name = "N")]
    pub cpus: Option<f64>,
    /// Memory the scheduler may hand out here (e.g. 480g). Default: the
    /// host's total (MemTotal).
    #[arg(long = "memory", value_name = "SIZE", value_parser = parse_size)]
    pub memory: Option<u64>,
    /// NCCL_SOCKET_IFNAME for gang tasks on this host (the interface the
    /// ranks reach each other through, e.g. eth0 or ib0).
    #[arg(long, value_name = "IFACE")]
    pub nccl_socket_ifname: Option<String>,
}

fn parse_size(s: &str) -> Result<u64, String> {
    berth_proto::size::parse(s).map_err(|e| format!("{e}"))
}

impl HostResources {
    /// Refuses values that cannot be a host's.
    pub fn check(&self) -> Result<(), String> {
        if let Some(c) = self.cpus {
            if !c.is_finite() || c <= 0.0 {
                return Err(format!("--cpus {c}: give a positive number of CPUs"));
            }
        }
        if self.memory == Some(0) {
            return Err("--memory 0: give the memory jobs may hold, e.g. 64g".into());
        }
        if let Some(i) = &self.nccl_socket_ifname {
            if i.is_empty() || i.contains(char::is_whitespace) || i.contains('=') {
                return Err(format!(
                    "--nccl-socket-ifname {i:?}: give an interface name"
                ));
            }
        }
        Ok(())
    }

    /// Thousandths of a core the scheduler may hand out.
    pub fn millicpus(&self) -> u64 {
        match self.cpus {
            Some(c) => (c * 1000.0).round() as u64,
            None => std::thread::available_parallelism().map_or(0, |n| n.get() as u64 * 1000),
        }
    }

    /// Bytes of memory the scheduler may hand out (0 when unknown).
    pub fn memory_bytes(&self) -> u64 {
        self.memory.unwrap_or_else(|| {
            std::fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|m| mem_total(&m))
                .unwrap_or(0)
        })
    }
}

/// MemTotal from /proc/meminfo's text, in bytes.
pub fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// NUMA nodes the kernel shows (0 when it shows none).
pub fn numa_nodes() -> u32 {
    std::fs::read_dir("/sys/devices/system/node")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    name.strip_prefix("node")
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                })
                .count() as u32
        })
        .unwrap_or(0)
}

/// A CPU mask as NVML gives it (64 CPUs per word, lowest first) as a
/// cpulist ("0-15,32-47").
pub fn mask_to_list(words: &[u64]) -> String {
    let cpus: BTreeSet<u32> = words
        .iter()
        .enumerate()
        .flat_map(|(w, bits)| {
            (0..64)
                .filter(move |b| bits >> b & 1 == 1)
                .map(move |b| w as u32 * 64 + b)
        })
        .collect();
    list_text(&cpus)
}

/// Parses a cpulist ("0-3,8"); `None` when malformed.
pub fn parse_list(s: &str) -> Option<BTreeSet<u32>> {
    let mut out = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if a > b || b - a > 65_536 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => {
                out.insert(part.parse().ok()?);
            }
        }
    }
    Some(out)
}

fn list_text(cpus: &BTreeSet<u32>) -> String {
    let mut parts = Vec::new();
    let mut it = cpus.iter().copied().peekable();
    while let Some(start) = it.next() {
        let mut end = start;
        while it.peek() == Some(&(end + 1)) {
            end = it.next().unwrap_or(end);
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

/// The CPU set for a job's container: the union of its GPUs' affinities,
/// when every one of them is known (a partial answer would pin the job
/// away from some of its GPUs). Empty: no pinning.
pub fn cpuset_for<'a>(affinities: impl IntoIterator<Item = &'a str>) -> String {
    let mut union = BTreeSet::new();
    let mut any = false;
    for a in affinities {
        match parse_list(a) {
            Some(set) if !set.is_empty() => {
                union.extend(set);
                any = true;
            }
            _ => return String::new(),
        }
    }
    if any {
        list_text(&union)
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_and_lists_round_trip() {
        assert_eq!(mask_to_list(&[0xffff, 0xffff]), "0-15,64-79");
        assert_eq!(mask_to_list(&[0b1011]), "0-1,3");
        assert_eq!(parse_list("0-3,8").unwrap().len(), 5);
        assert!(parse_list("3-1").is_none() && parse_list("x").is_none());
    }

    #[test]
    fn a_jobs_cpuset_is_its_gpus_affinity_or_nothing() {
        assert_eq!(cpuset_for(["0-15", "0-15"]), "0-15");
        assert_eq!(cpuset_for(["0-15", "16-31"]), "0-31");
        // One GPU of unknown affinity: no pinning at all.
        assert_eq!(cpuset_for(["0-15", ""]), "");
        assert_eq!(cpuset_for([]), "");
    }

    #[test]
    fn host_resources_come_from_flags_or_the_host() {
        assert_eq!(
            mem_total("MemTotal:       16384 kB\nMemFree: 1 kB\n"),
            Some(16 << 20)
        );
        let given = HostResources {
            cpus: Some(2.0),
            memory: Some(1 << 30),
            nccl_socket_ifname: None,
        };
        assert_eq!((given.millicpus(), given.memory_bytes()), (2000, 1 << 30));
        assert!(HostResources::default().millicpus() >= 1000);
        assert!(HostResources {
            cpus: Some(0.0),
            ..Default::default()
        }
        .check()
        .is_err());
    }
}
