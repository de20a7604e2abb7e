//! GPU inventory behind a small trait: NVML on real hosts, a simulated
//! inventory where NVML is absent (CI, laptops, these machines).

mod nvml;
mod sim;

pub use nvml::NvmlGpus;
pub use sim::{parse_spec, SimGpus};

use berth_proto::v1::{Gpu, GpuProcess};

/// One GPU as sampled now.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GpuSample {
    pub index: u32,
    pub uuid: String,
    pub model: String,
    pub memory_total_bytes: u64,
    pub memory_used_bytes: u64,
    pub utilization_percent: u32,
    /// Every process using the GPU, Berth's or not.
    pub processes: Vec<GpuProcess>,
    /// GPUs sharing a non-empty group are close (NVLink / one PCIe switch).
    pub topology_group: String,
    /// 0 when the driver does not say.
    pub temperature_celsius: u32,
    pub power_milliwatts: u32,
    /// CPUs close to the GPU ("0-15"); empty when the driver does not say.
    pub cpu_affinity: String,
}

pub trait GpuBackend: Send + Sync {
    /// NVML or simulated, shown in `berth nodes`.
    fn kind(&self) -> berth_proto::internal::v1::GpuBackend;
    fn sample(&self) -> crate::Result<Vec<GpuSample>>;
}

/// NVML when the library and driver load; otherwise the simulated inventory
/// `fallback` builds, with a log line saying why.
pub fn detect(
    fallback: impl FnOnce() -> crate::Result<SimGpus>,
) -> crate::Result<Box<dyn GpuBackend>> {
    match NvmlGpus::init() {
        Ok(nvml) => {
            tracing::info!(gpus = nvml.count(), "NVML loaded: using real GPUs");
            Ok(Box::new(nvml))
        }
        Err(why) => {
            let sim = fallback()?;
            tracing::warn!(%why, simulated = sim.len(), "NVML unavailable: running on a simulated GPU inventory");
            Ok(Box::new(sim))
        }
    }
}

/// Splits each GPU's processes into Berth's and foreign ones. `is_berth(pid)`
/// says whether a pid runs inside one of this node's Berth containers.
pub fn classify(samples: Vec<GpuSample>, is_berth: impl Fn(u32) -> bool) -> Vec<Gpu> {
    samples
        .into_iter()
        .map(|s| Gpu {
            index: s.index,
            uuid: s.uuid,
            model: s.model,
            memory_total_bytes: s.memory_total_bytes,
            memory_used_bytes: s.memory_used_bytes,
            utilization_percent: s.utilization_percent,
            foreign_processes: s
                .processes
                .into_iter()
                .filter(|p| !is_berth(p.pid))
                .collect(),
            job_id: String::new(),
            topology_group: s.topology_group,
            slices: Vec::new(),
            temperature_celsius: s.temperature_celsius,
            power_milliwatts: s.power_milliwatts,
            cpu_affinity: s.cpu_affinity,
        })
        .collect()
}

/// Whether `/proc/<pid>/cgroup` places the process in one of `containers`
/// (full Docker ids). Works for cgroup v1 and v2 and the systemd driver, which
/// all embed the container id in the path.
pub fn pid_in_containers(pid: u32, containers: &[String]) -> bool {
    let Ok(cgroup) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
        return false;
    };
    containers
        .iter()
        .any(|id| id.len() >= 12 && cgroup.contains(id.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_keeps_only_foreign_processes() {
        let sample = GpuSample {
            index: 0,
            uuid: "GPU-a".into(),
            processes: vec![
                GpuProcess {
                    pid: 10,
                    name: "python".into(),
                    used_memory_bytes: 1,
                },
                GpuProcess {
                    pid: 11,
                    name: "jupyter".into(),
                    used_memory_bytes: 2,
                },
            ],
            ..Default::default()
        };
        let gpus = classify(vec![sample], |pid| pid == 10);
        assert_eq!(gpus[0].foreign_processes.len(), 1);
        assert_eq!(gpus[0].foreign_processes[0].name, "jupyter");
    }

    #[test]
    fn own_process_is_not_in_a_container() {
        assert!(!pid_in_containers(
            std::process::id(),
            &["0123456789abcdef".into()]
        ));
    }
}
