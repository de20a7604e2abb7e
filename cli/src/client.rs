//! Connecting to a controller: `--addr` may list several; the leader among
//! them is used. Every request carries the user's token over TLS.

use anyhow::{anyhow, Result};
use berth_proto::connect::Authed;
use berth_proto::v1::access_service_client::AccessServiceClient;
use berth_proto::v1::controller_service_client::ControllerServiceClient;
use berth_proto::v1::event_service_client::EventServiceClient;
use berth_proto::v1::image_service_client::ImageServiceClient;
use berth_proto::v1::job_service_client::JobServiceClient;
use berth_proto::v1::node_service_client::NodeServiceClient;
use berth_proto::v1::{Job, ListJobsRequest};
use tonic::transport::Channel;

use crate::config::Settings;

#[derive(Clone)]
pub struct Client {
    channel: Channel,
    settings: Settings,
}

impl Client {
    /// Connects to the leader among the configured controllers.
    pub async fn connect(settings: &Settings) -> Result<Client> {
        let list: Vec<String> = settings.addr.split(',').map(String::from).collect();
        match berth_proto::connect::leader(&settings.dial, &list, std::time::Duration::from_secs(10))
            .await
        {
            Ok((channel, _)) => Ok(Client {
                channel,
                settings: settings.clone(),
            }),
            Err(e) => Err(anyhow!(
                "cannot reach a Berth controller leader ({e}). Is one running? Start one with `berth dev`, or set --addr / BERTH_ADDR"
            )),
        }
    }

    fn authed(&self) -> Authed {
        berth_proto::connect::authed(self.channel.clone(), self.settings.dial.bearer.clone())
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

    /// Every job `req` matches, page after page, newest first. The
    /// largest pages the server gives: each costs it a pass over the jobs.
    pub async fn all_jobs(&self, mut req: ListJobsRequest) -> Result<Vec<Job>> {
        req.page_size = 5000;
        let mut jobs = Vec::new();
        loop {
            let page = self
                .jobs()
                .list_jobs(req.clone())
                .await
                .map_err(status_message)?
                .into_inner();
            jobs.extend(page.jobs);
            if page.next_page_token.is_empty() {
                return Ok(jobs);
            }
            req.page_token = page.next_page_token;
        }
    }
}

/// A gRPC error as a person should read it: the controller's message, no
/// status-code noise, no stack.
pub fn status_message(s: tonic::Status) -> anyhow::Error {
    anyhow!("{}", s.message())
}
