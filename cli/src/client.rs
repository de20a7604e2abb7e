//! Connecting to a controller: `--addr` may list several; the first that
//! answers is used.

use anyhow::{anyhow, Result};
use berth_proto::v1::event_service_client::EventServiceClient;
use berth_proto::v1::image_service_client::ImageServiceClient;
use berth_proto::v1::job_service_client::JobServiceClient;
use berth_proto::v1::node_service_client::NodeServiceClient;
use berth_proto::v1::{Job, ListJobsRequest};
use tonic::transport::Channel;

#[derive(Clone)]
pub struct Client {
    channel: Channel,
}

impl Client {
    /// Connects to the leader among `addrs` (comma-separated).
    pub async fn connect(addrs: &str) -> Result<Client> {
        let list: Vec<String> = addrs.split(',').map(String::from).collect();
        match berth_proto::connect::leader(&list, std::time::Duration::from_secs(10)).await {
            Ok((channel, _)) => Ok(Client { channel }),
            Err(e) => Err(anyhow!(
                "cannot reach a Berth controller leader ({e}). Is one running? Start one with `berth dev`, or set --addr / BERTH_ADDR"
            )),
        }
    }

    pub fn jobs(&self) -> JobServiceClient<Channel> {
        JobServiceClient::new(self.channel.clone())
    }
    pub fn nodes(&self) -> NodeServiceClient<Channel> {
        NodeServiceClient::new(self.channel.clone())
    }
    pub fn images(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel.clone())
            .max_decoding_message_size(berth_proto::archive::MAX_MESSAGE)
            .max_encoding_message_size(berth_proto::archive::MAX_MESSAGE)
    }
    pub fn events(&self) -> EventServiceClient<Channel> {
        EventServiceClient::new(self.channel.clone())
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
