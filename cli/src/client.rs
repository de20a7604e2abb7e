//! Connecting to a controller: `--addr` may list several; the leader among
//! them is used. Every request carries the user's token over TLS.
//! Idempotent calls (`Client::retry`: reads, and submits with their request
//! id) survive a failover: on a transport error or a controller that is no
//! longer leader they find the new leader and try again, for a bounded time.

use anyhow::{anyhow, Result};
use berth_proto::connect::Authed;
use berth_proto::v1::access_service_client::AccessServiceClient;
use berth_proto::v1::controller_service_client::ControllerServiceClient;
use berth_proto::v1::event_service_client::EventServiceClient;
use berth_proto::v1::image_service_client::ImageServiceClient;
use berth_proto::v1::job_service_client::JobServiceClient;
use berth_proto::v1::node_service_client::NodeServiceClient;
use berth_proto::v1::usage_service_client::UsageServiceClient;
use berth_proto::v1::{Job, ListJobsRequest};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::config::Settings;

/// How long an idempotent call keeps trying across a failover.
pub const RETRY_FOR: Duration = Duration::from_secs(12);

/// One try of a retried call: a leader that stopped answering (its packets
/// dropped) must not hold the whole budget. Just over the controller's own
/// 5 s bound on a proposal, which answers "outcome unknown" itself, so a
/// slow but healthy submit is not cut short and sent again.
const TRY_TIMEOUT: Duration = Duration::from_secs(6);

#[derive(Clone)]
pub struct Client {
    /// Replaced when a retry finds a new leader; shared by clones.
    channel: Arc<Mutex<Channel>>,
    settings: Settings,
}

impl Client {
    /// Connects to the leader among the configured controllers.
    pub async fn connect(settings: &Settings) -> Result<Client> {
        match Self::dial(settings, RETRY_FOR).await {
            Ok(channel) => Ok(Client {
                channel: Arc::new(Mutex::new(channel)),
                settings: settings.clone(),
            }),
            Err(e) => Err(anyhow!(
                "cannot reach a Berth controller leader ({e}). Is one running? Start one with `berth dev`, or set --addr / BERTH_ADDR"
            )),
        }
    }

    async fn dial(settings: &Settings, patience: Duration) -> Result<Channel, String> {
        let list: Vec<String> = settings.addr.split(',').map(String::from).collect();
        berth_proto::connect::leader(&settings.dial, &list, patience)
            .await
            .map(|(channel, _)| channel)
    }

    /// Runs `call` until it succeeds or fails for a reason another try
    /// cannot change; a transport error or a deposed leader sends it to the
    /// current leader, for up to `RETRY_FOR`. Only for idempotent calls.
    pub async fn retry<T, F, Fut>(&self, mut call: F) -> Result<T>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let start = Instant::now();
        loop {
            let outcome = tokio::time::timeout(TRY_TIMEOUT, call(self.clone()))
                .await
                .unwrap_or_else(|_| {
                    Err(Status::unavailable(format!(
                        "no answer in {} s",
                        TRY_TIMEOUT.as_secs()
                    )))
                });
            let status = match outcome {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) if retryable(&s) => s,
                Err(s) => return Err(status_message(s)),
            };
            let left = RETRY_FOR.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(anyhow!(
                    "no controller answered at {} within {} s: {}",
                    self.settings.addr,
                    RETRY_FOR.as_secs(),
                    status.message()
                ));
            }
            tokio::time::sleep(Duration::from_millis(200).min(left)).await;
            if let Ok(channel) = Self::dial(&self.settings, left).await {
                *self.channel.lock().unwrap() = channel;
            }
        }
    }

    fn authed(&self) -> Authed {
        let channel = self.channel.lock().unwrap().clone();
        berth_proto::connect::authed(channel, self.settings.dial.bearer.clone())
    }

    pub fn jobs(&self) -> JobServiceClient<Authed> {
        JobServiceClient::new(self.authed())
    }
    pub fn nodes(&self) -> NodeServiceClient<Authed> {
        NodeServiceClient::new(self.authed())
    }
    pub fn images(&self) -> ImageServiceClient<Authed> {
        ImageServiceClient::new(self.authed())
            .max_decoding_message_size(berth_proto::archive::MAX_MESSAGE)
            .max_encoding_message_size(berth_proto::archive::MAX_MESSAGE)
    }
    pub fn events(&self) -> EventServiceClient<Authed> {
        EventServiceClient::new(self.authed())
    }
    pub fn access(&self) -> AccessServiceClient<Authed> {
        AccessServiceClient::new(self.authed())
    }
    pub fn controllers(&self) -> ControllerServiceClient<Authed> {
        ControllerServiceClient::new(self.authed())
    }
    pub fn usage(&self) -> UsageServiceClient<Authed> {
        UsageServiceClient::new(self.authed())
    }

    /// Every job `req` matches, page after page, newest first. The
    /// largest pages the server gives: each costs it a pass over the jobs.
    pub async fn all_jobs(&self, mut req: ListJobsRequest) -> Result<Vec<Job>> {
        req.page_size = 5000;
        let mut jobs = Vec::new();
        loop {
            let page = self
                .retry(|c| {
                    let req = req.clone();
                    async move { c.jobs().list_jobs(req).await }
                })
                .await?;
            jobs.extend(page.jobs);
            if page.next_page_token.is_empty() {
                return Ok(jobs);
            }
            req.page_token = page.next_page_token;
        }
    }
}

/// Whether another try, perhaps at another controller, can succeed: the
/// connection failed or broke, or the controller is not (or no longer) the
/// leader, or a proposal's outcome is unknown (a retry with the same
/// request id is answered with the first outcome).
fn retryable(s: &Status) -> bool {
    match s.code() {
        Code::Unavailable | Code::Cancelled => true,
        Code::Unknown => {
            let m = s.message().to_ascii_lowercase();
            ["transport", "connection", "h2 protocol", "broken pipe"]
                .iter()
                .any(|w| m.contains(w))
        }
        _ => false,
    }
}

/// A gRPC error as a person should read it: the controller's message, no
/// status-code noise, no stack.
pub fn status_message(s: tonic::Status) -> anyhow::Error {
    anyhow!("{}", s.message())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_another_try_can_change_is_retried() {
        for s in [
            Status::unavailable("not the leader; the leader is 10.0.0.2:7450"),
            Status::unavailable("tcp connect error"),
            Status::cancelled("h2 stream reset"),
            Status::unknown("transport error"),
        ] {
            assert!(retryable(&s), "{s:?}");
        }
        for s in [
            Status::invalid_argument("--gpus 99: no host has 99 GPUs"),
            Status::permission_denied("only the job's owner"),
            Status::unauthenticated("bad token"),
            Status::not_found("no job x"),
            Status::unknown("the handler failed"),
        ] {
            assert!(!retryable(&s), "{s:?}");
        }
    }
}
