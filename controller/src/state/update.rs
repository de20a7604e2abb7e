//! `berth update`: what can change in a live job. Memory and CPU limits
//! (the agent applies them to the running container, as `docker update`)
//! and the restart policy (Berth's own). Nothing else: GPUs, mounts, ports
//! and the image are fixed once a container exists.

use super::JobState;

use super::{Applied, Rejection, RestartPolicy, State};

impl State {
    /// Zero and `None` leave a value as it is.
    pub(super) fn update(
        &mut self,
        id: &str,
        memory_bytes: u64,
        nano_cpus: u64,
        restart: Option<RestartPolicy>,
    ) -> Result<Applied, Rejection> {
        let job = self.job_mut(id)?;
        // A gang's tasks carry its spec, `nodes` included.
        let gang = job.spec.nodes > 1;
        match job.state {
            JobState::Queued | JobState::Placed | JobState::Pulling | JobState::Running => {}
            other => {
                return Err(Rejection::BadTransition(
                    id.into(),
                    other.word(),
                    "be updated",
                ))
            }
        }
        if gang && !matches!(restart, None | Some(RestartPolicy::No)) {
            return Err(Rejection::BadUpdate {
                job: id.into(),
                why: "a gang task cannot have a restart policy: the gang is torn down as a whole"
                    .into(),
            });
        }
        if memory_bytes > 0 {
            job.spec.memory_bytes = memory_bytes;
        }
        if nano_cpus > 0 {
            job.spec.nano_cpus = nano_cpus;
        }
        if let Some(policy) = restart {
            job.spec.restart = policy;
        }
        let node = job.node.clone();
        if let Some(node) = node {
            self.touch(&node);
        }
        Ok(Applied {
            jobs: vec![id.to_string()],
            ..Applied::default()
        })
    }
}
