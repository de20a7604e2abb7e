//! Real GPUs through NVML (`libnvidia-ml.so.1`, loaded at run time).

use berth_proto::v1::GpuProcess;
use nvml_wrapper::enum_wrappers::device::{TemperatureSensor, TopologyLevel};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::Nvml;

use super::{GpuBackend, GpuSample};
use crate::{Error, Result};

pub struct NvmlGpus {
    nvml: Nvml,
    /// Topology group per GPU index, computed once: it does not change.
    groups: Vec<String>,
}

impl NvmlGpus {
    /// Fails with the reason (library missing, driver not loaded, ...) so the
    /// caller can say why it falls back to simulated GPUs.
    pub fn init() -> Result<NvmlGpus> {
        let nvml = Nvml::init().map_err(|e| Error::Gpu(format!("NVML init: {e}")))?;
        let groups = topology_groups(&nvml);
        Ok(NvmlGpus { nvml, groups })
    }

    pub fn count(&self) -> u32 {
        self.nvml.device_count().unwrap_or(0)
    }

    pub fn driver_version(&self) -> String {
        self.nvml.sys_driver_version().unwrap_or_default()
    }
}

impl GpuBackend for NvmlGpus {
    fn kind(&self) -> berth_proto::internal::v1::GpuBackend {
        berth_proto::internal::v1::GpuBackend::Nvml
    }

    fn sample(&self) -> Result<Vec<GpuSample>> {
        // 64 words of 64 bits: hosts of up to 4,096 CPUs.
        const CPU_MASK_WORDS: usize = 64;
        let nvml_err = |e: nvml_wrapper::error::NvmlError| Error::Gpu(e.to_string());
        let count = self.nvml.device_count().map_err(nvml_err)?;
        let mut out = Vec::with_capacity(count as usize);
        for index in 0..count {
            let dev = self.nvml.device_by_index(index).map_err(nvml_err)?;
            let mem = dev.memory_info().map_err(nvml_err)?;
            let mut processes = Vec::new();
            // Compute (CUDA) and graphics processes; a pid may be in both.
            for p in dev
                .running_compute_processes()
                .unwrap_or_default()
                .into_iter()
                .chain(dev.running_graphics_processes().unwrap_or_default())
            {
                if processes.iter().any(|q: &GpuProcess| q.pid == p.pid) {
                    continue;
                }
                processes.push(GpuProcess {
                    pid: p.pid,
                    name: std::fs::read_to_string(format!("/proc/{}/comm", p.pid))
                        .map(|s| s.trim().to_string())
                        .unwrap_or_default(),
                    used_memory_bytes: match p.used_gpu_memory {
                        UsedGpuMemory::Used(b) => b,
                        UsedGpuMemory::Unavailable => 0,
                    },
                });
            }
            out.push(GpuSample {
                index,
                uuid: dev.uuid().map_err(nvml_err)?,
                model: dev.name().map_err(nvml_err)?,
                memory_total_bytes: mem.total,
                memory_used_bytes: mem.used,
                utilization_percent: dev.utilization_rates().map(|u| u.gpu).unwrap_or(0),
                processes,
                topology_group: self.groups.get(index as usize).cloned().unwrap_or_default(),
                temperature_celsius: dev.temperature(TemperatureSensor::Gpu).unwrap_or(0),
                power_milliwatts: dev.power_usage().unwrap_or(0),
                cpu_affinity: dev
                    .cpu_affinity(CPU_MASK_WORDS)
                    // c_ulong words: u64 on the 64-bit Linux hosts NVML runs on.
                    .map(|words| crate::resources::mask_to_list(&words))
                    .unwrap_or_default(),
            });
        }
        Ok(out)
    }
}

/// GPUs that are close, as union-find over pairs: joined by an active NVLink
/// (directly, or through NVSwitch, where every linked GPU reaches every
/// other), or under one PCIe switch (common ancestor `Single`/`Multiple`, or
/// `Internal` for dual-GPU boards). A GPU close to no other gets no group.
fn topology_groups(nvml: &Nvml) -> Vec<String> {
    let count = nvml.device_count().unwrap_or(0) as usize;
    let mut parent: Vec<usize> = (0..count).collect();
    fn root(parent: &mut [usize], i: usize) -> usize {
        let mut r = i;
        while parent[r] != r {
            r = parent[r];
        }
        parent[i] = r;
        r
    }
    let join = |parent: &mut Vec<usize>, a: usize, b: usize| {
        let (ra, rb) = (root(parent, a), root(parent, b));
        parent[ra.max(rb)] = ra.min(rb);
    };
    let bus_ids: Vec<String> = (0..count)
        .map(|i| {
            nvml.device_by_index(i as u32)
                .and_then(|d| d.pci_info())
                .map(|p| p.bus_id.to_lowercase())
                .unwrap_or_default()
        })
        .collect();
    let mut switched = Vec::new();
    for a in 0..count {
        let Ok(dev) = nvml.device_by_index(a as u32) else {
            continue;
        };
        // NVLink: up to 18 links per GPU on current parts.
        for link in 0..18 {
            let l = dev.link_wrapper_for(link);
            if !l.is_active().unwrap_or(false) {
                continue;
            }
            let Ok(remote) = l.remote_pci_info() else {
                continue;
            };
            match bus_ids
                .iter()
                .position(|b| *b == remote.bus_id.to_lowercase())
            {
                Some(b) => join(&mut parent, a, b),
                None => switched.push(a),
            }
        }
        for b in a + 1..count {
            let Ok(other) = nvml.device_by_index(b as u32) else {
                continue;
            };
            if matches!(
                dev.topology_common_ancestor(other),
                Ok(TopologyLevel::Internal | TopologyLevel::Single | TopologyLevel::Multiple)
            ) {
                join(&mut parent, a, b);
            }
        }
    }
    for w in switched.windows(2) {
        join(&mut parent, w[0], w[1]);
    }
    let roots: Vec<usize> = (0..count).map(|i| root(&mut parent, i)).collect();
    roots
        .iter()
        .map(|r| {
            if roots.iter().filter(|x| *x == r).count() > 1 {
                format!("gpu{r}")
            } else {
                String::new()
            }
        })
        .collect()
}
