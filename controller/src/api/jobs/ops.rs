//! Job operations of the `Controller`: submit (single jobs, gangs, arrays),
//! stop, update, quotas. Groups are addressed by their id or name, and act
//! on every task.

use berth_proto::v1::JobSpec;

use crate::api::images::{find_image, held};
use crate::api::validate::{self, ImageSeen};
use crate::core::{convert, wire, Controller, Target};
use crate::leader::Leader;
use crate::scheduler;
use crate::state::{Command, JobRecord, JobState};
use crate::{Error, Reason, Result};

impl Controller {
    /// Validates, then queues a job (or every task of a gang or an array,
    /// in one command). Nothing is written when validation fails. A retry
    /// with the same `request_id` returns what the first attempt created.
    pub async fn submit(
        &self,
        spec: JobSpec,
        role: &str,
        name: String,
        request_id: String,
        max_queued: u32,
    ) -> Result<Target> {
        self.ensure_leader()?;
        if let Some(id) = self.read(|s| s.job_for_request(&request_id).map(String::from)) {
            return self.resolve_target(&id);
        }
        let id = format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
        let name = if name.is_empty() {
            format!("job-{id}")
        } else {
            name
        };
        self.validate_submit(&spec, &name)?;
        if max_queued > 0 {
            let queued = self.read(|s| s.queued_of(&spec.user));
            let tasks = spec.nodes.max(1) as usize
                * spec
                    .array
                    .map_or(1, |a| (a.end.saturating_sub(a.start) + 1) as usize);
            if queued + tasks > max_queued as usize {
                return Err(Error::Refused {
                    reason: Reason::TooManyQueued,
                    message: format!(
                        "{} has {queued} queued jobs; at most {max_queued} may wait at once (--max-queued-per-user): wait for some to start or stop some",
                        spec.user
                    ),
                });
            }
        }
        let mut spec = wire::spec_from_wire(spec)?;
        spec.role = role.to_string();
        let applied = self
            .propose(Command::Submit {
                id: id.clone(),
                name,
                spec: Box::new(spec),
                at_ms: convert::now_ms(),
                request_id,
            })
            .await?;
        // A duplicate request id applies as what it first created.
        let first = applied.jobs.first().cloned().unwrap_or_else(|| id.clone());
        let group = self.read(|s| {
            s.jobs
                .get(&first)
                .map(|j| j.group.clone())
                .unwrap_or_default()
        });
        self.resolve_target(if group.is_empty() { &first } else { &group })
    }

    /// docker's `-P` also publishes the image's own EXPOSE ports: added to
    /// `expose` from a host that holds the image (its report lists them).
    pub fn exposed_by_image(&self, spec: &mut JobSpec) {
        if !spec.publish_all {
            return;
        }
        let wanted = scheduler::normalize_image(&spec.image);
        let exposed = {
            let inner = self.shared.lock();
            inner
                .telemetry
                .values()
                .find_map(|t| find_image(&t.report, &wanted).map(|i| i.exposed_ports.clone()))
        };
        for p in exposed.unwrap_or_default() {
            if !spec.expose.contains(&p) {
                spec.expose.push(p);
            }
        }
    }

    /// The mount and privilege policy in force, for a job of `role`'s.
    pub fn check_policy(&self, spec: &JobSpec, role: &str, protected: &[String]) -> Result<()> {
        let policy = self.read(|s| s.policy_in_force());
        policy
            .check(spec, &spec.user, role, protected)
            .map_err(|v| Error::Refused {
                reason: Reason::PolicyDenied,
                message: v.to_string(),
            })
    }

    /// Every check a submit makes, writing nothing.
    fn validate_submit(&self, spec: &JobSpec, name: &str) -> Result<()> {
        let inner = self.shared.lock();
        validate::job(spec, name)?;
        // Stops at the first host holding the image: O(hosts) at worst.
        let wanted = scheduler::normalize_image(&spec.image);
        let mut image = ImageSeen::Nowhere;
        for n in inner.state.nodes.keys() {
            match inner.telemetry.get(n) {
                None => image = ImageSeen::Unknown,
                Some(t) if held(&t.report, &wanted).is_some() => {
                    image = ImageSeen::Somewhere;
                    break;
                }
                Some(_) => {}
            }
        }
        validate::against_cluster(spec, &inner.state, image)?;
        Ok(())
    }

    /// A dry run: the checks of a submit, then where the next scheduling
    /// pass would place the job (or why it would wait). Writes nothing.
    pub fn plan_submit(
        &self,
        leader: &Leader,
        spec: &JobSpec,
        name: &str,
    ) -> Result<scheduler::Explanation> {
        let name = if name.is_empty() { "dry-run" } else { name };
        self.validate_submit(spec, name)?;
        leader.plan(&wire::spec_from_wire(spec.clone())?, name)
    }

    /// Stops a job, or every live task of a group.
    pub async fn cancel(&self, reference: &str) -> Result<Target> {
        self.ensure_leader()?;
        let target = self.resolve_target(reference)?;
        let tasks = target.tasks();
        if tasks.iter().all(|j| j.state.is_finished()) {
            let (name, id, word) = match &target {
                Target::Job(j) => (j.name.clone(), j.id.clone(), j.state.word()),
                Target::Group(g, _) => (g.name.clone(), g.id.clone(), "finished"),
            };
            return Err(Error::refused(
                Reason::JobFinished,
                format!("job {name} ({id}) has already finished ({word})"),
            ));
        }
        for job in tasks.iter().filter(|j| j.state.is_live()) {
            // A preempted job being stopped still needs the user's stop (no requeue).
            if job.state == JobState::Stopping && !job.requeue {
                continue;
            }
            self.propose(Command::Cancel {
                job_id: job.id.clone(),
                at_ms: convert::now_ms(),
            })
            .await?;
        }
        self.resolve_target(&match &target {
            Target::Job(j) => j.id.clone(),
            Target::Group(g, _) => g.id.clone(),
        })
    }

    /// `berth update`, first half: the live jobs (one, or a group's live
    /// tasks) that new limits or a restart policy would change (0 / empty
    /// leave a value), all checked before anything changes.
    pub fn update_targets(
        &self,
        reference: &str,
        memory_bytes: u64,
        nano_cpus: u64,
        restart: &str,
    ) -> Result<Vec<JobRecord>> {
        self.ensure_leader()?;
        if memory_bytes == 0 && nano_cpus == 0 && restart.is_empty() {
            return Err(Error::InvalidArgument(
                "nothing to update: give --memory, --cpus or --restart".into(),
            ));
        }
        validate::limits(memory_bytes, nano_cpus)?;
        let target = self.resolve_target(reference)?;
        let tasks = target.tasks();
        // A gang's tasks carry its spec: a gang task named alone is refused too.
        let nodes = tasks.iter().map(|j| j.spec.nodes).max().unwrap_or(1);
        validate::restart(restart, nodes)?;
        let live: Vec<JobRecord> = tasks
            .into_iter()
            .filter(|j| j.state.is_live() && j.state != JobState::Stopping)
            .collect();
        if live.is_empty() {
            let (name, word) = match &target {
                Target::Job(j) => (j.name.clone(), j.state.word()),
                Target::Group(g, _) => (g.name.clone(), "finished"),
            };
            return Err(Error::FailedPrecondition(format!(
                "job {name} is {word}: only a queued or running job can be updated \
                 (run it again with the new values instead)"
            )));
        }
        Ok(live)
    }

    /// `berth update`, second half: records the change (the agents apply
    /// limits to containers that start later, or drifted); the jobs after it.
    pub async fn update(
        &self,
        live: &[JobRecord],
        memory_bytes: u64,
        nano_cpus: u64,
        restart: &str,
    ) -> Result<Vec<JobRecord>> {
        // Empty leaves the policy; "no" sets none.
        let restart = match restart {
            "" => None,
            s => Some(wire::restart_from_wire(s)?),
        };
        for job in live {
            self.propose(Command::Update {
                job_id: job.id.clone(),
                memory_bytes,
                nano_cpus,
                restart,
            })
            .await?;
        }
        Ok(self.read(|s| {
            live.iter()
                .filter_map(|j| s.jobs.get(&j.id).cloned())
                .collect()
        }))
    }

    /// Replaces a user's quota: whole GPUs, and CPU (thousandths of a
    /// core) and memory held at once; `None` is no limit on it, all `None`
    /// removes the quota.
    pub async fn set_quota(
        &self,
        user: String,
        gpus: Option<u32>,
        cpus: Option<f64>,
        memory_bytes: Option<u64>,
    ) -> Result<()> {
        self.ensure_leader()?;
        if user.is_empty() {
            return Err(Error::InvalidArgument("a user name is required".into()));
        }
        let millicpus = match cpus {
            Some(c) if !c.is_finite() || c <= 0.0 || c > 1e9 => {
                return Err(Error::InvalidArgument(format!(
                    "--cpus {c}: give a positive number of CPUs"
                )))
            }
            Some(c) => Some((c * 1000.0).round() as u64),
            None => None,
        };
        if memory_bytes == Some(0) {
            return Err(Error::InvalidArgument(
                "--memory 0: give a size, or leave it out for no limit".into(),
            ));
        }
        let cpus_memory = (millicpus.is_some() || memory_bytes.is_some())
            .then(|| (millicpus.unwrap_or(0), memory_bytes.unwrap_or(0)));
        self.propose(Command::SetQuota {
            user,
            gpus,
            cpus_memory,
        })
        .await?;
        Ok(())
    }
}
