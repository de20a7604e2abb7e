//! Forwarding while receiving: an agent loading an image can serve it to
//! the next agent of a chain at the same time, so sending one image to N
//! hosts reads it from the holder once. The relay passes on the chunks as
//! they came off the wire (still compressed); each receiver verifies the
//! holder's digest itself, so a relay cannot vouch for bytes it altered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_proto::v1::ImageChunk;
use tokio::sync::{mpsc, Notify};

/// Chunks (or the reason the upstream failed) for one downstream agent.
pub type Feed = mpsc::Receiver<Result<ImageChunk, String>>;

/// In-flight images this agent is receiving and will pass on.
#[derive(Default)]
pub struct Relays {
    by_image: Mutex<HashMap<String, Arc<Relay>>>,
    registered: Notify,
}

pub struct Relay {
    subscribers: Mutex<Vec<mpsc::Sender<Result<ImageChunk, String>>>>,
    /// Closed once the first chunk went out: late subscribers would miss it.
    started: Mutex<bool>,
    joined: Notify,
}

impl Relays {
    /// Registers `image` as being received here.
    pub fn open(&self, image: &str) -> Arc<Relay> {
        let relay = Arc::new(Relay {
            subscribers: Mutex::new(Vec::new()),
            started: Mutex::new(false),
            joined: Notify::new(),
        });
        self.by_image
            .lock()
            .unwrap()
            .insert(image.to_string(), relay.clone());
        self.registered.notify_waiters();
        relay
    }

    pub fn close(&self, image: &str) {
        self.by_image.lock().unwrap().remove(image);
    }

    /// Subscribes to `image` if it is (or, within `patience`, starts) being
    /// received here and has not started flowing yet.
    pub async fn subscribe(&self, image: &str, patience: Duration) -> Option<Feed> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let waiting = self.registered.notified();
            if let Some(relay) = self.by_image.lock().unwrap().get(image).cloned() {
                return relay.subscribe();
            }
            if tokio::time::timeout_at(deadline, waiting).await.is_err() {
                return None;
            }
        }
    }
}

impl Relay {
    fn subscribe(&self) -> Option<Feed> {
        if *self.started.lock().unwrap() {
            return None;
        }
        let (tx, rx) = mpsc::channel(4);
        self.subscribers.lock().unwrap().push(tx);
        self.joined.notify_waiters();
        Some(rx)
    }

    /// Waits until `n` downstream agents subscribed, or `patience` passed.
    pub async fn wait_for(&self, n: usize, patience: Duration) {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let joined = self.joined.notified();
            if self.subscribers.lock().unwrap().len() >= n {
                return;
            }
            if tokio::time::timeout_at(deadline, joined).await.is_err() {
                return;
            }
        }
    }

    /// Passes a chunk on to every subscriber still listening (at the pace of
    /// the slowest: the channels are bounded).
    pub async fn forward(&self, chunk: &ImageChunk) {
        *self.started.lock().unwrap() = true;
        let subs: Vec<_> = self.subscribers.lock().unwrap().clone();
        let mut gone = Vec::new();
        for (i, s) in subs.iter().enumerate() {
            if s.send(Ok(chunk.clone())).await.is_err() {
                gone.push(i);
            }
        }
        if !gone.is_empty() {
            let mut live = self.subscribers.lock().unwrap();
            live.retain(|s| !s.is_closed());
        }
    }

    /// Tells every subscriber the upstream failed (they fall back to a holder).
    pub async fn fail(&self, why: &str) {
        let subs: Vec<_> = std::mem::take(&mut *self.subscribers.lock().unwrap());
        for s in subs {
            let _ = s.send(Err(why.to_string())).await;
        }
    }
}
