//! `berth.v1.EventService`: job and node events as the controller applies
//! them.

use crate::api::auth::{caller, redact};
use std::pin::Pin;
use std::sync::Arc;

use berth_proto::v1::event_service_server::EventService;
use berth_proto::v1::*;
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};

use crate::core::Controller;

pub struct Events(pub Arc<Controller>);

type EventStream = Pin<Box<dyn Stream<Item = Result<Event, Status>> + Send>>;

#[tonic::async_trait]
impl EventService for Events {
    type WatchStream = EventStream;

    async fn watch(&self, req: Request<WatchRequest>) -> Result<Response<EventStream>, Status> {
        let who = caller(&req)?;
        self.0.ensure_leader()?;
        let filter = req.into_inner().job;
        let job_id = if filter.is_empty() {
            None
        } else {
            Some(self.0.resolve(&filter)?.id)
        };
        let mut rx = self.0.subscribe_events();
        let out = async_stream::stream! {
            loop {
                match rx.recv().await {
                    Ok(mut ev) => {
                        if let Some(event::Kind::Job(j)) = ev.kind.as_mut() {
                            redact::job(&who, j);
                        }
                        let keep = match (&job_id, &ev.kind) {
                            (None, _) => true,
                            (Some(id), Some(event::Kind::Job(j))) => &j.id == id,
                            _ => false,
                        };
                        if keep {
                            yield Ok(ev);
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        yield Err(Status::data_loss(format!("watcher fell {n} events behind; re-read state and watch again")));
                        break;
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        };
        Ok(Response::new(Box::pin(out)))
    }
}
