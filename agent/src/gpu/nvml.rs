//! Real GPUs through NVML (`libnvidia-ml.so.1`, loaded at run time).

use berth_proto::v1::GpuProcess;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::Nvml;

use super::{GpuBackend, GpuSample};
use crate::{Error, Result};

pub struct NvmlGpus {
    nvml: Nvml,
}

impl NvmlGpus {
    /// Fails with the reason (library missing, driver not loaded, ...) so the
    /// caller can say why it falls back to simulated GPUs.
    pub fn init() -> Result<NvmlGpus> {
        let nvml = Nvml::init().map_err(|e| Error::Gpu(format!("NVML init: {e}")))?;
        Ok(NvmlGpus { nvml })
    }

    pub fn count(&self) -> u32 {
        self.nvml.device_count().unwrap_or(0)
    }

    pub fn driver_version(&self) -> String {
        self.nvml.sys_driver_version().unwrap_or_default()
    }
}

impl GpuBackend for NvmlGpus {
    fn kind(&self) -> &'static str {
        "nvml"
    }

    fn sample(&self) -> Result<Vec<GpuSample>> {
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
            });
        }
        Ok(out)
    }
}
