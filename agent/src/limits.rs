//! The host's safe defaults against one job taking it down, and its
//! cleanup: every container gets a bounded log and a pids limit (and a
//! memory limit per GPU, when configured) unless its job asks otherwise;
//! containers of finished jobs are removed after a retention. The same
//! flags on `berth-agent` and `berth dev`.

use std::time::Duration;

/// What the agent applies to every container it creates, and how long it
/// keeps finished ones.
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct HostLimits {
    /// Containers of finished jobs are removed this long after they ended
    /// (`berth logs` and `berth cp` work on the job until then); an earlier
    /// attempt's container goes as soon as the next attempt starts here.
    #[arg(long, env = "BERTH_CONTAINER_RETENTION", default_value = "24h")]
    pub container_retention: humantime::Duration,
    /// Largest log file of a container before docker rotates it (docker's
    /// json-file `max-size`, e.g. 100m); 0: unbounded.
    #[arg(long, env = "BERTH_LOG_MAX_SIZE", default_value = "100m", value_parser = log_size)]
    pub log_max_size: u64,
    /// Log files kept per container (docker's json-file `max-file`).
    #[arg(long, env = "BERTH_LOG_MAX_FILE", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub log_max_file: u32,
    /// Processes and threads one container may have (docker's
    /// --pids-limit), so a fork bomb cannot take the host; 0: no limit.
    #[arg(long, env = "BERTH_DEFAULT_PIDS_LIMIT", default_value_t = 32768)]
    pub default_pids_limit: u64,
    /// Memory limit of a job that sets none (-m), per GPU it holds (a
    /// GPU-less job counts as one), e.g. 64g. None by default.
    #[arg(long, env = "BERTH_DEFAULT_MEMORY_PER_GPU", value_parser = log_size)]
    pub default_memory_per_gpu: Option<u64>,
}

impl Default for HostLimits {
    fn default() -> HostLimits {
        HostLimits {
            container_retention: Duration::from_secs(24 * 3600).into(),
            log_max_size: 100 << 20,
            log_max_file: 3,
            default_pids_limit: 32768,
            default_memory_per_gpu: None,
        }
    }
}

impl HostLimits {
    pub fn retention(&self) -> Duration {
        *self.container_retention
    }

    /// The memory limit a job gets: its own, else the per-GPU default.
    pub fn memory_for(&self, asked: u64, gpus: u32) -> u64 {
        match (asked, self.default_memory_per_gpu) {
            (0, Some(per_gpu)) => per_gpu.saturating_mul(gpus.max(1) as u64),
            (asked, _) => asked,
        }
    }
}

fn log_size(s: &str) -> Result<u64, String> {
    berth_proto::size::parse(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_without_a_memory_limit_gets_the_default_per_gpu() {
        let mut l = HostLimits::default();
        assert_eq!(l.memory_for(0, 4), 0, "no default: unlimited");
        l.default_memory_per_gpu = Some(8 << 30);
        assert_eq!(l.memory_for(0, 4), 32 << 30);
        assert_eq!(l.memory_for(0, 0), 8 << 30, "a GPU-less job counts as one");
        assert_eq!(l.memory_for(1 << 30, 4), 1 << 30, "the job's own wins");
    }

    #[test]
    fn flags_read_like_docker() {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            l: HostLimits,
        }
        let t = T::try_parse_from([
            "t",
            "--container-retention",
            "90m",
            "--log-max-size",
            "10m",
            "--default-memory-per-gpu",
            "64g",
        ])
        .unwrap();
        assert_eq!(t.l.retention(), Duration::from_secs(5400));
        assert_eq!(t.l.log_max_size, 10 << 20);
        assert_eq!(t.l.default_memory_per_gpu, Some(64 << 30));
        assert!(T::try_parse_from(["t", "--log-max-size", "lots"]).is_err());
        let d = T::try_parse_from(["t"]).unwrap();
        assert_eq!(d.l, HostLimits::default());
    }
}
