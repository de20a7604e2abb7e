//! Raft messages between controllers over tonic.
//!
//! One task and one bounded queue per peer, so a slow or dead peer never
//! blocks the raft thread or the others: when its queue is full, messages are
//! dropped and raft retransmits. Each message is split into ≤ 1 MiB chunks
//! on one long-lived client stream, so snapshots are not bounded by gRPC's
//! 4 MiB message limit. A failed stream is reported as `Unreachable`; a
//! snapshot handed to the stream as `Finish`, one that could not be as `Failure`.

use std::collections::{BTreeMap, HashMap};
#[cfg(feature = "fault-injection")]
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::internal::v1::raft_service_client::RaftServiceClient;
use berth_proto::internal::v1::raft_service_server::RaftService;
use berth_proto::internal::v1::{RaftChunk, SendResponse};
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use raft::SnapshotStatus;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use berth_proto::tls::{Tls, CONTROLLER_DOMAIN};

use super::handle::Input;

const CHUNK: usize = 1 << 20;
const QUEUE: usize = 4096;
/// The largest message (a snapshot, in practice) a peer may reassemble here:
/// only controllers reach this service, but a bug or a bad peer must not
/// make one grow without bound.
const MAX_MESSAGE: usize = 2 << 30;

pub struct Transport {
    peers: HashMap<u64, mpsc::Sender<Message>>,
    inbox: Sender<Input>,
    runtime: tokio::runtime::Handle,
    cut: Cut,
    tls: Tls,
}

/// A network cut of this controller's raft traffic, for tests: while the
/// file named by `BERTH_FAULT_CUT_FILE` exists, raft messages in and out are
/// dropped (the API still answers, as in a partition between controllers
/// only). Only a build with the `fault-injection` feature (the test suite's)
/// reads the variable; otherwise the cut is never set.
#[derive(Clone, Default)]
pub struct Cut(Arc<AtomicBool>);

impl Cut {
    pub fn from_env() -> Cut {
        let cut = Cut::default();
        #[cfg(feature = "fault-injection")]
        if let Some(path) = std::env::var_os("BERTH_FAULT_CUT_FILE").map(PathBuf::from) {
            tracing::warn!(file = %path.display(), "fault injection: raft traffic is cut while this file exists");
            let flag = cut.0.clone();
            tokio::spawn(async move {
                loop {
                    flag.store(path.exists(), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        }
        cut
    }

    pub fn is_cut(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

impl Transport {
    /// Spawns a sender task per peer (not `self_id`) on the current runtime.
    pub fn start(
        self_id: u64,
        peers: &BTreeMap<u64, String>,
        inbox: Sender<Input>,
        cut: Cut,
        tls: Tls,
    ) -> Transport {
        let mut t = Transport {
            peers: HashMap::new(),
            inbox,
            runtime: tokio::runtime::Handle::current(),
            cut,
            tls,
        };
        for (&id, addr) in peers.iter().filter(|(id, _)| **id != self_id) {
            t.add_peer(id, addr.clone());
        }
        t
    }

    /// Starts (or restarts, at a new address) the sender task for a peer.
    pub fn add_peer(&mut self, id: u64, addr: String) {
        let (tx, rx) = mpsc::channel(QUEUE);
        self.runtime.spawn(peer_loop(
            id,
            addr,
            rx,
            self.inbox.clone(),
            self.tls.clone(),
        ));
        self.peers.insert(id, tx);
    }

    /// Stops sending to a removed peer (its task ends with its queue).
    pub fn remove_peer(&mut self, id: u64) {
        self.peers.remove(&id);
    }

    pub fn send(&self, msgs: Vec<Message>) {
        if self.cut.is_cut() {
            return;
        }
        for m in msgs {
            if let Some(tx) = self.peers.get(&m.to) {
                // Full queue: drop; raft resends what matters.
                let _ = tx.try_send(m);
            }
        }
    }
}

async fn peer_loop(
    id: u64,
    addr: String,
    mut queue: mpsc::Receiver<Message>,
    inbox: Sender<Input>,
    tls: Tls,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        // Mutual TLS: this controller's certificate, and the peer's must
        // be a controller's.
        let endpoint = match berth_proto::connect::endpoint(&addr, &tls, CONTROLLER_DOMAIN) {
            Ok(e) => e.connect_timeout(Duration::from_millis(500)),
            Err(e) => {
                tracing::error!(peer = id, %addr, error = %e, "bad peer address");
                return;
            }
        };
        let channel = match endpoint.connect().await {
            Ok(c) => c,
            Err(_) => {
                let _ = inbox.send(Input::Unreachable(id));
                // Drain what piled up: stale heartbeats and appends are useless.
                while let Ok(m) = queue.try_recv() {
                    if m.get_msg_type() == MessageType::MsgSnapshot {
                        let _ = inbox.send(Input::Snapshot(id, SnapshotStatus::Failure));
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        let (tx, rx) = mpsc::channel::<RaftChunk>(64);
        let mut client = RaftServiceClient::new(channel);
        let call = tokio::spawn(async move {
            client
                .send(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
        });
        'stream: while let Some(m) = queue.recv().await {
            let is_snapshot = m.get_msg_type() == MessageType::MsgSnapshot;
            let Ok(bytes) = m.write_to_bytes() else {
                continue;
            };
            let mut chunks = bytes.chunks(CHUNK).peekable();
            while let Some(c) = chunks.next() {
                let chunk = RaftChunk {
                    data: c.to_vec(),
                    more: chunks.peek().is_some(),
                };
                if tx.send(chunk).await.is_err() {
                    if is_snapshot {
                        let _ = inbox.send(Input::Snapshot(id, SnapshotStatus::Failure));
                    }
                    break 'stream;
                }
            }
            if is_snapshot {
                let _ = inbox.send(Input::Snapshot(id, SnapshotStatus::Finish));
            }
        }
        drop(tx);
        let _ = call.await;
        if queue.is_closed() && queue.is_empty() {
            return; // the peer was removed
        }
        let _ = inbox.send(Input::Unreachable(id));
    }
}

/// The receiving side: reassembles chunks and feeds the raft thread.
pub struct RaftServer {
    pub inbox: Sender<Input>,
    pub cut: Cut,
}

#[tonic::async_trait]
impl RaftService for RaftServer {
    async fn send(
        &self,
        req: Request<Streaming<RaftChunk>>,
    ) -> Result<Response<SendResponse>, Status> {
        let mut stream = req.into_inner();
        let mut buf = Vec::new();
        while let Some(chunk) = stream.message().await? {
            if buf.len() + chunk.data.len() > MAX_MESSAGE {
                return Err(Status::resource_exhausted(format!(
                    "a raft message over {} MiB: refused (a snapshot that large needs --snapshot-every lower, or a bigger limit)",
                    MAX_MESSAGE >> 20
                )));
            }
            buf.extend_from_slice(&chunk.data);
            if chunk.more {
                continue;
            }
            let msg = Message::parse_from_bytes(&buf)
                .map_err(|e| Status::invalid_argument(format!("bad raft message: {e}")))?;
            buf.clear();
            if self.cut.is_cut() {
                continue;
            }
            if self.inbox.send(Input::Message(msg)).is_err() {
                return Err(Status::unavailable("raft stopped"));
            }
        }
        Ok(Response::new(SendResponse {}))
    }
}
