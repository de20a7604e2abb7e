//! Finding a job, or a gang or array, by what a user typed: an id, a
//! unique id prefix, or a name (as docker resolves container references).

use super::Controller;
use crate::state::{GroupRecord, JobRecord, State};
use crate::{Error, Reason, Result};

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
}

/// Resolution order, as docker does for containers: exact id, then exact name
/// (newest first), then a unique id prefix.
pub fn resolve_in<'a>(state: &'a State, reference: &str) -> Result<&'a JobRecord> {
    if reference.is_empty() {
        return Err(Error::InvalidArgument(
            "a job id or name is required".into(),
        ));
    }
    if let Some(job) = state.jobs.get(reference) {
        return Ok(job);
    }
    if let Some(id) = state.live_job_named(reference) {
        return Ok(&state.jobs[id]);
    }
    if let Some(job) = state
        .jobs
        .values()
        .filter(|j| j.name == reference)
        .max_by_key(|j| j.submitted_at_ms)
    {
        return Ok(job);
    }
    let mut matches = state
        .jobs
        .range(reference.to_string()..)
        .take_while(|(id, _)| id.starts_with(reference));
    match (matches.next(), matches.next()) {
        (Some((_, job)), None) => Ok(job),
        (Some(_), Some(_)) => Err(Error::InvalidArgument(format!(
            "{reference:?} matches several job ids; give more characters"
        ))),
        _ => Err(Error::refused(
            Reason::JobNotFound,
            format!("no job with id or name {reference:?}"),
        )),
    }
}
