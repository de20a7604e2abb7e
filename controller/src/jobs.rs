//! Job operations of the `Controller`: submit (single jobs, gangs, arrays),
//! stop, explain, quotas. Groups are addressed by their id or name, and act
//! on every task.

use std::collections::HashSet;

use berth_proto::v1::JobSpec;

use crate::core::Controller;
use crate::scheduler::{self, Explanation};
use crate::state::{Command, GroupRecord, JobRecord};
use crate::validate::ImageSeen;
use crate::views::{resolve_in, scheduler_snapshot};
use crate::{convert, validate, Error, Result};

/// What a reference names: one job, or a gang/array.
#[derive(Debug, Clone)]
pub enum Target {
    Job(Box<JobRecord>),
    Group(GroupRecord, Vec<JobRecord>),
}

impl Target {
    pub fn tasks(&self) -> Vec<JobRecord> {
        match self {
            Target::Job(j) => vec![(**j).clone()],
            Target::Group(_, tasks) => tasks.clone(),
        }
    }
}

impl Controller {
    /// Finds a job by id, unique id prefix, or name (the newest job of that name).
    /// A group's id or name gets an error naming its tasks and the verbs
    /// that take a group.
    pub fn resolve(&self, reference: &str) -> Result<JobRecord> {
        self.read(|s| {
            resolve_in(s, reference).cloned().map_err(|e| {
                let group = s
                    .groups
                    .get(reference)
                    .or_else(|| s.groups.values().find(|g| g.name == reference));
                match group {
                    Some(g) => Error::InvalidArgument(format!(
                        "{reference} is a {} of {} tasks ({} ...): name a task, or use berth wait/stop/explain {reference}",
                        if g.kind == crate::state::GroupKind::Gang { "gang" } else { "job array" },
                        g.tasks.len(),
                        g.tasks.first().and_then(|t| s.jobs.get(t)).map_or("", |j| j.name.as_str()),
                    )),
                    None => e,
                }
            })
        })
    }

    /// A job, or a group by exact id or name (the newest group of that name).
    pub fn resolve_target(&self, reference: &str) -> Result<Target> {
        self.read(|s| {
            if !s.jobs.contains_key(reference) {
                let group = s.groups.get(reference).or_else(|| {
                    s.groups
                        .values()
                        .filter(|g| g.name == reference)
                        .max_by_key(|g| g.submitted_at_ms)
                });
                if let Some(g) = group {
                    let tasks = g
                        .tasks
                        .iter()
                        .filter_map(|t| s.jobs.get(t))
                        .cloned()
                        .collect();
                    return Ok(Target::Group(g.clone(), tasks));
                }
            }
            resolve_in(s, reference).map(|j| Target::Job(Box::new(j.clone())))
        })
    }

    /// Validates, then queues a job (or every task of a gang or an array,
    /// in one command). Nothing is written when validation fails. A retry
    /// with the same `request_id` returns what the first attempt created.
    pub async fn submit(&self, spec: JobSpec, name: String, request_id: String) -> Result<Target> {
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
                Some(t) if crate::images::held(&t.report, &wanted).is_some() => {
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
    /// pass would place the job (or why it would wait), as if it were
    /// queued now behind everything already queued. Writes nothing.
    pub fn plan_submit(&self, spec: &JobSpec, name: &str) -> Result<scheduler::Explanation> {
        let name = if name.is_empty() { "dry-run" } else { name };
        self.validate_submit(spec, name)?;
        let mut inner = self.shared.lock();
        let mut snapshot = scheduler_snapshot(&mut inner, true);
        let down = down_nodes(&inner.state, &snapshot);
        drop(inner);
        let id = format!("(dry run) {name}");
        let tasks = spec.nodes.max(1);
        let job = crate::scheduler::QueuedJob {
            id: id.clone(),
            gang: if tasks > 1 {
                (0..tasks).map(|r| format!("{id} rank {r}")).collect()
            } else {
                Vec::new()
            },
            ..crate::sched_queue::from_spec(spec, u64::MAX)
        };
        let mut queue = (*snapshot.queue).clone();
        queue.push(std::sync::Arc::new(job));
        snapshot.queue = std::sync::Arc::new(queue);
        snapshot.queue_keys = None; // they describe the queue without it
        scheduler::explain(&snapshot, &id, &down)
            .ok_or_else(|| Error::Unavailable("the dry run lost its job; try again".into()))
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
            return Err(Error::FailedPrecondition(format!(
                "job {name} ({id}) has already finished ({word})"
            )));
        }
        for job in tasks.iter().filter(|j| j.state.is_live()) {
            // A preempted job being stopped still needs the user's stop (no requeue).
            if job.state == berth_proto::v1::JobState::Stopping && !job.requeue {
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
        crate::validate::limits(memory_bytes, nano_cpus)?;
        let target = self.resolve_target(reference)?;
        let tasks = target.tasks();
        // A gang's tasks carry its spec: a gang task named alone is refused too.
        let nodes = tasks.iter().map(|j| j.spec.nodes).max().unwrap_or(1);
        crate::validate::restart(restart, nodes)?;
        let live: Vec<JobRecord> = tasks
            .into_iter()
            .filter(|j| j.state.is_live() && j.state != berth_proto::v1::JobState::Stopping)
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
        for job in live {
            self.propose(Command::Update {
                job_id: job.id.clone(),
                memory_bytes,
                nano_cpus,
                restart: restart.to_string(),
            })
            .await?;
        }
        Ok(self.read(|s| {
            live.iter()
                .filter_map(|j| s.jobs.get(&j.id).cloned())
                .collect()
        }))
    }

    /// On the leader: forgets the jobs that finished more than `retention`
    /// ago, if there are any. Returns how many went.
    pub async fn forget_old_jobs(&self, retention: std::time::Duration) -> Result<usize> {
        self.ensure_leader()?;
        let before_ms = convert::now_ms() - retention.as_millis() as i64;
        // The state's own rule: a finished task whose group still runs is
        // not counted, so no empty `Forget` is proposed every minute for it.
        let gone = self.read(|s| s.forgettable(before_ms).0.len());
        if gone == 0 {
            return Ok(0);
        }
        self.propose(Command::Forget { before_ms }).await?;
        tracing::info!(jobs = gone, retention = %humantime::format_duration(retention), "forgot finished jobs");
        Ok(gone)
    }

    /// Why a queued job waits (for a gang task: why its gang waits).
    pub fn explain(&self, reference: &str) -> Result<(JobRecord, Explanation)> {
        let job = match self.resolve_target(reference)? {
            Target::Job(j) => *j,
            Target::Group(_, tasks) => tasks
                .iter()
                .find(|t| t.state == berth_proto::v1::JobState::Queued)
                .or(tasks.first())
                .cloned()
                .ok_or_else(|| Error::NotFound(format!("group {reference} has no tasks")))?,
        };
        if job.state != berth_proto::v1::JobState::Queued {
            let where_ = job.node.clone().unwrap_or_default();
            let summary = match job.state {
                s if s.is_finished() => format!("not queued: it is {}", s.word()),
                s => format!("not queued: it is {} on {where_}", s.word()),
            };
            return Ok((
                job,
                Explanation {
                    summary,
                    ..Explanation::default()
                },
            ));
        }
        let mut inner = self.shared.lock();
        let snapshot = scheduler_snapshot(&mut inner, true);
        let queued_id = inner
            .state
            .groups
            .get(&job.group)
            .filter(|g| g.kind == crate::state::GroupKind::Gang)
            .map_or_else(|| job.id.clone(), |g| g.id.clone());
        let down = down_nodes(&inner.state, &snapshot);
        let e = scheduler::explain(&snapshot, &queued_id, &down)
            .ok_or_else(|| Error::NotFound(format!("job {} is not in the queue", job.id)))?;
        drop(inner);
        Ok((job, e))
    }

    /// Sets (Some) or removes (None) a user's quota of whole GPUs.
    pub async fn set_quota(&self, user: String, gpus: Option<u32>) -> Result<()> {
        self.ensure_leader()?;
        if user.is_empty() {
            return Err(Error::InvalidArgument("a user name is required".into()));
        }
        self.propose(Command::SetQuota { user, gpus }).await?;
        Ok(())
    }
}

/// Registered nodes the snapshot left out: not reporting.
fn down_nodes(state: &crate::state::State, snapshot: &scheduler::Snapshot) -> Vec<String> {
    let ready: HashSet<&str> = snapshot.nodes.iter().map(|n| n.name.as_str()).collect();
    state
        .nodes
        .keys()
        .filter(|n| !ready.contains(n.as_str()))
        .cloned()
        .collect()
}
