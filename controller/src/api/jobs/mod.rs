//! `berth.v1.JobService`.
//!
//! - `ops`: submit (single jobs, gangs, arrays), stop, update, quotas.
//! - `logs`: `berth logs [-f]`, through restarts.
//! - `containers`: exec, cp and commit, proxied to the job's agent.

use std::pin::Pin;
use std::sync::Arc;

use berth_proto::v1::job_service_server::JobService;
use berth_proto::v1::*;
use futures::Stream;
use tonic::{Request, Response, Status};

mod containers;
mod list;
pub(crate) mod logs;
mod ops;

use crate::api::auth::guard::Access;
use crate::api::auth::{caller, check, redact, Action, Identity};
use crate::core::{convert, Controller, Target};
use crate::leader::Leader;
use logs::LogStream;

pub struct Jobs(pub Arc<Controller>, pub Arc<Leader>, pub Arc<Access>);

impl Jobs {
    /// Every task `reference` names, checked as `who`'s to `verb`.
    fn owned(&self, who: &Identity, reference: &str, verb: &str) -> Result<(), Status> {
        let target = self.0.resolve_target(reference)?;
        for task in target.tasks() {
            check(
                who,
                Action::OnJob {
                    owner: &task.spec.user,
                    verb,
                },
            )?;
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl JobService for Jobs {
    async fn submit_job(
        &self,
        req: Request<SubmitJobRequest>,
    ) -> Result<Response<SubmitJobResponse>, Status> {
        let who = caller(&req)?;
        let req = req.into_inner();
        let mut spec = req
            .spec
            .ok_or_else(|| Status::invalid_argument("spec is required"))?;
        // The owner is who authenticated, whatever the client wrote.
        let Some((owner, role)) = who.user() else {
            return Err(Status::permission_denied("only users submit jobs"));
        };
        spec.user = owner.to_string();
        crate::api::validate::defaults(&mut spec);
        self.0.exposed_by_image(&mut spec);
        // The caps bound users; admins (operators, their pipelines) are
        // trusted with the cluster anyway.
        let capped = role != crate::api::auth::Role::Admin;
        if let Some(limit) = self.2.submit_rate.as_ref().filter(|_| capped) {
            if limit.check_key(&spec.user).is_err() {
                return Err(Status::resource_exhausted(format!(
                    "{owner} is submitting faster than the {} per second a user may (berth-controller --max-submits-per-second): slow down and retry",
                    self.2.submit_rate_per_second
                )));
            }
        }
        check(
            &who,
            Action::Submit {
                priority: spec.priority,
                ceiling: self.2.priority_ceiling,
            },
        )?;
        self.0
            .check_policy(&spec, role.word(), &self.2.protected_paths)?;
        if req.dry_run {
            self.0.ensure_leader()?;
            let plan = self.0.plan_submit(&self.1, &spec, &req.name)?;
            return Ok(Response::new(SubmitJobResponse {
                plan: Some(explanation(None, plan)),
                ..Default::default()
            }));
        }
        let target = self
            .0
            .submit(
                spec,
                role.word(),
                req.name,
                req.request_id,
                if capped {
                    self.2.max_queued_per_user
                } else {
                    0
                },
            )
            .await?;
        Ok(Response::new(self.0.read(|s| match &target {
            Target::Job(job) => {
                tracing::info!(job = %job.id, name = %job.name, image = %job.spec.image, gpus = job.spec.gpus, "submitted");
                SubmitJobResponse {
                    job: Some(convert::job(job, s)),
                    ..Default::default()
                }
            }
            Target::Group(g, tasks) => {
                tracing::info!(group = %g.id, name = %g.name, kind = ?g.kind, tasks = tasks.len(), "submitted");
                let tasks: Vec<Job> = tasks.iter().map(|t| convert::job(t, s)).collect();
                SubmitJobResponse {
                    job: tasks.first().cloned(),
                    tasks,
                    group_id: g.id.clone(),
                    plan: None,
                }
            }
        })))
    }

    async fn get_job(
        &self,
        req: Request<GetJobRequest>,
    ) -> Result<Response<GetJobResponse>, Status> {
        let who = caller(&req)?;
        self.0.read_barrier().await?;
        let job = self.0.resolve(&req.into_inner().job)?;
        // The job and the revision read together: a watch from it misses
        // nothing that changed the job after this answer.
        let (mut job, revision) = self.0.read(|s| {
            let now = s.jobs.get(&job.id).unwrap_or(&job);
            (convert::job(now, s), s.applied_index)
        });
        job.pull = self.0.pull_of(&job);
        redact::job(&who, &mut job);
        Ok(Response::new(GetJobResponse {
            job: Some(job),
            revision,
        }))
    }

    async fn list_jobs(
        &self,
        req: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        let who = caller(&req)?;
        self.0.read_barrier().await?;
        let req = req.into_inner();
        let (jobs, next_page_token, revision) = self.0.read(|s| -> crate::Result<_> {
            let (page, next) = list::page(s, &req)?;
            let positions: std::collections::HashMap<&str, u32> = s
                .queue
                .iter()
                .enumerate()
                .map(|(i, id)| (id.as_str(), i as u32 + 1))
                .collect();
            let jobs: Vec<Job> = page
                .into_iter()
                .map(|j| convert::job_at(j, positions.get(j.id.as_str()).copied().unwrap_or(0)))
                .collect();
            Ok((jobs, next, s.applied_index))
        })?;
        let jobs = jobs
            .into_iter()
            .map(|mut j| {
                j.pull = self.0.pull_of(&j);
                redact::job(&who, &mut j);
                j
            })
            .collect();
        Ok(Response::new(ListJobsResponse {
            jobs,
            next_page_token,
            revision,
        }))
    }

    async fn cancel_job(
        &self,
        req: Request<CancelJobRequest>,
    ) -> Result<Response<CancelJobResponse>, Status> {
        let who = caller(&req)?;
        let reference = req.into_inner().job;
        self.owned(&who, &reference, "stop")?;
        let target = self.0.cancel(&reference).await?;
        Ok(Response::new(self.0.read(|s| {
            let tasks: Vec<Job> = target.tasks().iter().map(|t| convert::job(t, s)).collect();
            CancelJobResponse {
                job: tasks.first().cloned(),
                tasks: match target {
                    Target::Group(..) => tasks,
                    Target::Job(_) => Vec::new(),
                },
            }
        })))
    }

    async fn update_job(
        &self,
        req: Request<UpdateJobRequest>,
    ) -> Result<Response<UpdateJobResponse>, Status> {
        let who = caller(&req)?;
        let req = req.into_inner();
        self.owned(&who, &req.job, "update")?;
        let (memory, cpus) = (req.memory_bytes, req.nano_cpus);
        let live = self
            .0
            .update_targets(&req.job, memory, cpus, &req.restart)?;
        // The daemon has the last word on limits (a floor, memory in use):
        // it is asked first, so a refusal changes nothing.
        containers::update_limits(&self.0, &live, memory, cpus).await?;
        let jobs = self.0.update(&live, memory, cpus, &req.restart).await?;
        Ok(Response::new(self.0.read(|s| UpdateJobResponse {
            jobs: jobs.iter().map(|j| convert::job(j, s)).collect(),
        })))
    }

    async fn wait_job(
        &self,
        req: Request<WaitJobRequest>,
    ) -> Result<Response<WaitJobResponse>, Status> {
        let who = caller(&req)?;
        let target = self.0.resolve_target(&req.into_inner().job)?;
        let mut finished = Vec::new();
        for task in target.tasks() {
            finished.push(wait_until(&self.0, &task.id, |j| j.state.is_finished()).await?);
        }
        let code = |j: &crate::state::JobRecord| j.exit_code.unwrap_or(-1);
        let exit_code = finished.iter().map(code).find(|c| *c != 0).unwrap_or(0);
        let job = |j: &crate::state::JobRecord, s: &crate::state::State| {
            let mut j = convert::job(j, s);
            redact::job(&who, &mut j);
            j
        };
        Ok(Response::new(self.0.read(|s| match target {
            Target::Job(_) => WaitJobResponse {
                job: finished.first().map(|j| job(j, s)),
                exit_code: finished.first().map_or(-1, code),
                tasks: Vec::new(),
            },
            Target::Group(..) => WaitJobResponse {
                job: finished.first().map(|j| job(j, s)),
                exit_code,
                tasks: finished.iter().map(|j| job(j, s)).collect(),
            },
        })))
    }

    async fn explain_job(
        &self,
        req: Request<ExplainJobRequest>,
    ) -> Result<Response<ExplainJobResponse>, Status> {
        let who = caller(&req)?;
        self.0.ensure_leader()?;
        let (job, e) = self.1.explain(&req.into_inner().job)?;
        let mut job = self.0.read(|s| convert::job(&job, s));
        redact::job(&who, &mut job);
        Ok(Response::new(ExplainJobResponse {
            explanation: Some(explanation(Some(job), e)),
        }))
    }

    async fn set_quota(
        &self,
        req: Request<SetQuotaRequest>,
    ) -> Result<Response<SetQuotaResponse>, Status> {
        let req = req.into_inner();
        self.0
            .set_quota(req.user, req.gpus, req.cpus, req.memory_bytes)
            .await?;
        Ok(Response::new(SetQuotaResponse {}))
    }

    async fn list_quotas(
        &self,
        _req: Request<ListQuotasRequest>,
    ) -> Result<Response<ListQuotasResponse>, Status> {
        self.0.read_barrier().await?;
        let quotas = self.0.read(|s| {
            let users: std::collections::BTreeSet<&String> =
                s.quotas.keys().chain(s.host_quotas.keys()).collect();
            users
                .into_iter()
                .map(|user| {
                    let (cpus, memory_bytes) = s.host_quotas.get(user).copied().unwrap_or_default();
                    let (cpus_used, memory_used) = s.user_held(user);
                    Quota {
                        user: user.clone(),
                        gpus: s.quotas.get(user).copied(),
                        used: s.user_gpus(user),
                        queued_jobs: s.queued_of(user) as u32,
                        cpus: cpus as f64 / 1000.0,
                        memory_bytes,
                        cpus_used: cpus_used as f64 / 1000.0,
                        memory_used_bytes: memory_used,
                    }
                })
                .collect()
        });
        Ok(Response::new(ListQuotasResponse { quotas }))
    }

    type JobLogsStream = LogStream;

    type ExecStream = Pin<Box<dyn Stream<Item = Result<ExecOutput, Status>> + Send>>;

    async fn exec(
        &self,
        req: Request<tonic::Streaming<ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let who = caller(&req)?;
        Ok(Response::new(
            containers::exec(&self.0, &who, req.into_inner()).await?,
        ))
    }

    async fn stat_path(
        &self,
        req: Request<StatPathRequest>,
    ) -> Result<Response<StatPathResponse>, Status> {
        let who = caller(&req)?;
        Ok(Response::new(
            containers::stat(&self.0, &who, req.into_inner()).await?,
        ))
    }

    type CopyFromStream = Pin<Box<dyn Stream<Item = Result<CopyChunk, Status>> + Send>>;

    async fn copy_from(
        &self,
        req: Request<CopyFromRequest>,
    ) -> Result<Response<Self::CopyFromStream>, Status> {
        let who = caller(&req)?;
        Ok(Response::new(
            containers::copy_from(&self.0, &who, req.into_inner()).await?,
        ))
    }

    async fn copy_to(
        &self,
        req: Request<tonic::Streaming<CopyToInput>>,
    ) -> Result<Response<CopyToResponse>, Status> {
        let who = caller(&req)?;
        Ok(Response::new(
            containers::copy_to(&self.0, &who, req.into_inner()).await?,
        ))
    }

    async fn commit(
        &self,
        req: Request<CommitRequest>,
    ) -> Result<Response<CommitResponse>, Status> {
        let who = caller(&req)?;
        Ok(Response::new(
            containers::commit(&self.0, &who, req.into_inner()).await?,
        ))
    }

    async fn job_logs(&self, req: Request<JobLogsRequest>) -> Result<Response<LogStream>, Status> {
        let who = caller(&req)?;
        Ok(Response::new(
            logs::job_logs(self.0.clone(), &who, req.into_inner()).await?,
        ))
    }
}

/// Waits until the job satisfies `done`, re-checking after every applied command.
pub async fn wait_until(
    ctl: &Controller,
    id: &str,
    done: impl Fn(&crate::state::JobRecord) -> bool,
) -> Result<crate::state::JobRecord, Status> {
    let mut applied = ctl.subscribe_applied();
    loop {
        let job = ctl.resolve(id)?;
        if done(&job) {
            return Ok(job);
        }
        if applied.changed().await.is_err() {
            return Err(Status::unavailable("controller is shutting down"));
        }
    }
}

/// The scheduler's explanation as the API gives it.
fn explanation(job: Option<Job>, e: crate::scheduler::Explanation) -> Explanation {
    Explanation {
        job,
        summary: e.summary,
        hosts: e
            .hosts
            .into_iter()
            .map(|(reason, hosts)| HostReason {
                reason,
                hosts: hosts.len() as u32,
                examples: hosts.into_iter().take(5).collect(),
            })
            .collect(),
        queue: e.queue,
    }
}
