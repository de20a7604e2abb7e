//! `ListJobs`: a page of jobs, newest first, filtered by state, user, node,
//! name prefix and group (a gang's or an array's tasks). Pure over the state, so paging has unit tests.
//!
//! Order is (submitted at, id), newest first; a page token is the key of
//! the page's last job, and the next page starts strictly after it. Jobs
//! submitted meanwhile land before the token and are not shown again on
//! later pages (a listing is not a snapshot; `Watch` follows changes).
//! Each page costs one pass over the jobs plus sorting the page itself.

use std::cmp::Reverse;
use std::collections::HashSet;

use berth_proto::v1::{JobState as WireState, ListJobsRequest};

use crate::core::wire::state_from_wire;
use crate::state::{JobRecord, State};
use crate::{Error, Result};

/// Jobs per page when the request says 0, and the most a request gets.
pub const DEFAULT_PAGE: usize = 500;
pub const MAX_PAGE: usize = 5000;

/// The page's jobs, and the token for the next page (empty when none).
pub fn page<'a>(state: &'a State, req: &ListJobsRequest) -> Result<(Vec<&'a JobRecord>, String)> {
    let after = match req.page_token.as_str() {
        "" => None,
        t => Some(parse_token(t)?),
    };
    let mut states = HashSet::new();
    for s in &req.states {
        let state = WireState::try_from(*s)
            .ok()
            .and_then(state_from_wire)
            .ok_or_else(|| {
                Error::InvalidArgument(format!("state {s} is not a job state this server knows"))
            })?;
        states.insert(state);
    }
    let group: Option<&str> = (!req.group.is_empty()).then(|| {
        state
            .groups
            .get(&req.group)
            .or_else(|| {
                state
                    .groups
                    .values()
                    .filter(|g| g.name == req.group)
                    .max_by_key(|g| g.submitted_at_ms)
            })
            // A name no group has: nothing matches.
            .map_or("\0", |g| g.id.as_str())
    });
    let wanted = |j: &JobRecord| {
        let state_ok = if states.is_empty() {
            req.all || !j.state.is_finished()
        } else {
            states.contains(&j.state)
        };
        state_ok
            && (req.user.is_empty() || j.spec.user == req.user)
            && (req.node.is_empty() || j.node.as_deref() == Some(req.node.as_str()))
            && j.name.starts_with(&req.name_prefix)
            && group.is_none_or(|g| j.group == g)
    };
    let key = |j: &'a JobRecord| (j.submitted_at_ms, j.id.as_str());
    let mut found: Vec<&JobRecord> = state
        .jobs
        .values()
        .filter(|j| wanted(j))
        .filter(|j| {
            after
                .as_ref()
                .is_none_or(|(ms, id)| key(j) < (*ms, id.as_str()))
        })
        .collect();
    let size = match req.page_size as usize {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    };
    let more = found.len() > size;
    if more {
        // The newest `size`, without sorting what is left out.
        found.select_nth_unstable_by_key(size, |j| Reverse(key(j)));
        found.truncate(size);
    }
    found.sort_unstable_by_key(|j| Reverse(key(j)));
    let next = match found.last() {
        Some(last) if more => format!("{}:{}", last.submitted_at_ms, last.id),
        _ => String::new(),
    };
    Ok((found, next))
}

fn parse_token(t: &str) -> Result<(i64, String)> {
    t.split_once(':')
        .and_then(|(ms, id)| Some((ms.parse().ok()?, id.to_string())))
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "page_token {t:?} is not one this server gave: pass next_page_token back as it came"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::JobRecord;

    fn state(n: usize) -> State {
        let mut s = State::default();
        for i in 0..n {
            let id = format!("{i:04}");
            let job = JobRecord {
                picked_ports: Vec::new(),
                millicpus: 0,
                memory_bytes: 0,
                id: id.clone(),
                name: format!("{}-{i}", if i % 2 == 0 { "even" } else { "odd" }),
                spec: crate::state::JobSpec {
                    user: if i % 3 == 0 { "alice" } else { "bob" }.into(),
                    ..Default::default()
                },
                state: if i % 4 == 0 {
                    crate::state::JobState::Exited
                } else {
                    crate::state::JobState::Queued
                },
                node: (i % 5 == 0).then(|| "n1".to_string()),
                gpus: Vec::new(),
                container_id: String::new(),
                exit_code: None,
                message: String::new(),
                // Pairs share a submit time: ties go by id.
                submitted_at_ms: (i / 2) as i64,
                started_at_ms: 0,
                finished_at_ms: 0,
                placed_index: 0,
                stop_index: 0,
                seq: i as u64,
                group: String::new(),
                task_index: 0,
                task_env: Vec::new(),
                requeue: false,
                requeue_reason: String::new(),
                preemptions: 0,
                restarts: 0,
                not_before_ms: 0,
            };
            s.jobs.insert(id, job);
        }
        s
    }

    fn all_pages(s: &State, mut req: ListJobsRequest) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let (jobs, next) = page(s, &req).unwrap();
            assert!(jobs.len() <= req.page_size.max(1) as usize);
            out.extend(jobs.iter().map(|j| j.id.clone()));
            if next.is_empty() {
                return out;
            }
            req.page_token = next;
        }
    }

    #[test]
    fn pages_cover_every_job_once_newest_first() {
        let s = state(103);
        let ids = all_pages(
            &s,
            ListJobsRequest {
                all: true,
                page_size: 10,
                ..Default::default()
            },
        );
        let mut want: Vec<String> = s.jobs.keys().cloned().collect();
        want.sort_by_key(|id| Reverse((s.jobs[id].submitted_at_ms, id.clone())));
        assert_eq!(ids, want);
    }

    #[test]
    fn filters_combine_and_page_alike() {
        let s = state(200);
        let req = ListJobsRequest {
            page_size: 7,
            user: "alice".into(),
            name_prefix: "even".into(),
            ..Default::default()
        };
        let ids = all_pages(&s, req.clone());
        assert!(!ids.is_empty());
        for id in &ids {
            let j = &s.jobs[id];
            assert!(j.spec.user == "alice" && j.name.starts_with("even") && !j.state.is_finished());
        }
        let one_page = page(
            &s,
            &ListJobsRequest {
                page_size: 5000,
                ..req
            },
        )
        .unwrap();
        assert_eq!(one_page.0.len(), ids.len());
        assert!(one_page.1.is_empty());
        let exited = page(
            &s,
            &ListJobsRequest {
                states: vec![WireState::Exited as i32],
                node: "n1".into(),
                ..Default::default()
            },
        )
        .unwrap()
        .0;
        assert!(!exited.is_empty());
        assert!(exited
            .iter()
            .all(|j| j.state == crate::state::JobState::Exited && j.node.as_deref() == Some("n1")));
    }

    #[test]
    fn bad_tokens_and_states_are_refused() {
        let s = state(3);
        let bad = |req: ListJobsRequest| page(&s, &req).unwrap_err().to_string();
        assert!(bad(ListJobsRequest {
            page_token: "nonsense".into(),
            ..Default::default()
        })
        .contains("not one this server gave"));
        assert!(bad(ListJobsRequest {
            states: vec![99],
            ..Default::default()
        })
        .contains("not a job state"));
    }
}
