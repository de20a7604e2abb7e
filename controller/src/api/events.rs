//! `berth.v1.EventService`: job and node events as the controller applies
//! them, from a revision on (`core::history`), filtered by kind, job,
//! user and node; others' jobs redacted as in every listing.

use crate::api::auth::{caller, redact, Identity};
use std::pin::Pin;
use std::sync::Arc;

use berth_proto::v1::event_service_server::EventService;
use berth_proto::v1::*;
use futures::Stream;
use tokio::sync::broadcast::{self, error::RecvError};
use tonic::{Request, Response, Status};

use crate::core::Controller;

pub struct Events(pub Arc<Controller>);

type EventStream = Pin<Box<dyn Stream<Item = Result<Event, Status>> + Send>>;

/// What a watcher is sent first, and the live events after it.
type Backlog = (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>);

/// Which events a watcher asked for.
#[derive(Debug, Clone, Default)]
struct Filter {
    job: Option<String>,
    kind: Option<&'static str>,
    user: Option<String>,
    node: Option<String>,
}

impl Filter {
    fn keeps(&self, ev: &Event) -> bool {
        match &ev.kind {
            Some(event::Kind::Job(j)) => {
                self.kind.is_none_or(|k| k == "job")
                    && self.job.as_ref().is_none_or(|id| &j.id == id)
                    && self
                        .user
                        .as_ref()
                        .is_none_or(|u| j.spec.as_ref().is_some_and(|s| &s.user == u))
                    && self.node.as_ref().is_none_or(|n| &j.node == n)
            }
            Some(event::Kind::NodeRegistered(n)) => {
                self.kind.is_none_or(|k| k == "node")
                    && self.job.is_none()
                    && self.user.is_none()
                    && self.node.as_ref().is_none_or(|want| want == n)
            }
            None => false,
        }
    }
}

fn out_of_range(revision: u64, floor: u64) -> Status {
    Status::out_of_range(format!(
        "revision {revision} is older than this controller's event history (it keeps events after {floor}): list again, and watch from the list's revision"
    ))
}

/// Where a watcher is: the last event's index, and how many events of
/// that index it has had (an index may carry several).
#[derive(Default)]
struct Position {
    index: u64,
    seen: usize,
}

impl Position {
    fn advance(&mut self, ev: &Event) {
        if ev.index == self.index {
            self.seen += 1;
        } else {
            self.index = ev.index;
            self.seen = 1;
        }
    }
}

impl Events {
    /// The history after `revision` and a live subscription, taken under
    /// the state lock that events are published under: no gap, no repeat.
    fn start(&self, revision: u64) -> Result<Backlog, Status> {
        let inner = self.0.shared.lock();
        let replay = if revision == 0 {
            Vec::new()
        } else {
            inner
                .history
                .since(revision)
                .map_err(|floor| out_of_range(revision, floor))?
        };
        Ok((replay, self.0.subscribe_events()))
    }

    /// After a lag: what the watcher missed, from the history, and a new
    /// subscription; or why it must list again.
    fn catch_up(&self, at: &Position) -> Result<Backlog, Status> {
        let inner = self.0.shared.lock();
        let missed = inner.history.resume(at.index, at.seen).map_err(|floor| {
            Status::out_of_range(format!(
                "the watcher fell behind this controller's event history (it keeps events after {floor}): list again, and watch from the list's revision"
            ))
        })?;
        Ok((missed, self.0.subscribe_events()))
    }
}

/// The event as `who` may see it, if the filter keeps it (copied only then).
fn shown(who: &Identity, filter: &Filter, ev: &Event) -> Option<Event> {
    if !filter.keeps(ev) {
        return None;
    }
    let mut ev = ev.clone();
    if let Some(event::Kind::Job(j)) = ev.kind.as_mut() {
        redact::job(who, j);
    }
    Some(ev)
}

#[tonic::async_trait]
impl EventService for Events {
    type WatchStream = EventStream;

    async fn watch(&self, req: Request<WatchRequest>) -> Result<Response<EventStream>, Status> {
        let who = caller(&req)?;
        self.0.ensure_leader()?;
        let req = req.into_inner();
        let filter = Filter {
            job: if req.job.is_empty() {
                None
            } else {
                Some(self.0.resolve(&req.job)?.id)
            },
            kind: match req.kind.as_str() {
                "" => None,
                "job" => Some("job"),
                "node" => Some("node"),
                other => {
                    return Err(Status::invalid_argument(format!(
                        "kind {other:?}: use job or node"
                    )))
                }
            },
            user: Some(req.user).filter(|u| !u.is_empty()),
            node: Some(req.node).filter(|n| !n.is_empty()),
        };
        let (replay, mut rx) = self.start(req.from_revision)?;
        let events = Events(self.0.clone());
        let out = async_stream::stream! {
            let mut at = Position { index: req.from_revision, seen: 0 };
            let mut backlog = replay;
            loop {
                for ev in std::mem::take(&mut backlog) {
                    at.advance(&ev);
                    if let Some(ev) = shown(&who, &filter, &ev) {
                        yield Ok(ev);
                    }
                }
                match rx.recv().await {
                    Ok(ev) => backlog.push(ev),
                    Err(RecvError::Lagged(_)) => match events.catch_up(&at) {
                        Ok((missed, fresh)) => {
                            backlog = missed;
                            rx = fresh;
                        }
                        Err(status) => {
                            yield Err(status);
                            break;
                        }
                    },
                    Err(RecvError::Closed) => break,
                }
            }
        };
        Ok(Response::new(Box::pin(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job_event(id: &str, user: &str, node: &str) -> Event {
        Event {
            index: 1,
            at_ms: 0,
            kind: Some(event::Kind::Job(Job {
                id: id.into(),
                node: node.into(),
                spec: Some(JobSpec {
                    user: user.into(),
                    ..Default::default()
                }),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn filters_by_kind_job_user_and_node() {
        let j = job_event("j1", "alice", "gpu1");
        let n = Event {
            index: 2,
            at_ms: 0,
            kind: Some(event::Kind::NodeRegistered("gpu1".into())),
        };
        let all = Filter::default();
        assert!(all.keeps(&j) && all.keeps(&n));
        let alice = Filter {
            user: Some("alice".into()),
            ..Filter::default()
        };
        assert!(alice.keeps(&j) && !alice.keeps(&n));
        let bob = Filter {
            user: Some("bob".into()),
            ..Filter::default()
        };
        assert!(!bob.keeps(&j));
        let on_gpu1 = Filter {
            node: Some("gpu1".into()),
            ..Filter::default()
        };
        assert!(on_gpu1.keeps(&j) && on_gpu1.keeps(&n));
        let nodes = Filter {
            kind: Some("node"),
            ..Filter::default()
        };
        assert!(!nodes.keeps(&j) && nodes.keeps(&n));
        let one = Filter {
            job: Some("j2".into()),
            ..Filter::default()
        };
        assert!(!one.keeps(&j) && !one.keeps(&n));
    }
}
