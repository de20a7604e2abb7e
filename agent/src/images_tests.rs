//! Transfers between two in-process agents over real gRPC on loopback, with
//! fake daemons: the stream, compression, verification and fail-over logic.
//! (The end-to-end tests do the same between two real Docker daemons.)

use std::time::Duration;

use super::*;
use crate::agent::{Agent, AgentConfig};
use crate::gpu::{parse_spec, SimGpus};
use crate::runtime::fake::FakeRuntime;

/// One CA for every agent of these tests, as in a cluster.
fn tls(node: &str) -> berth_proto::tls::Tls {
    static CA: std::sync::OnceLock<berth_proto::tls::Ca> = std::sync::OnceLock::new();
    CA.get_or_init(|| berth_proto::tls::Ca::generate("test").unwrap())
        .issue(
            &berth_proto::tls::Peer::Node(node.into()),
            &[],
            berth_proto::tls::NODE_CERT_LIFETIME,
        )
        .unwrap()
}

/// A source agent serving `archive` as `reference` on a loopback port.
async fn source_of(reference: &str, archive: Vec<u8>) -> (String, Arc<FakeRuntime>) {
    let rt = Arc::new(FakeRuntime::default());
    rt.images
        .lock()
        .unwrap()
        .insert(reference.into(), ("sha256:abc".into(), archive));
    (serve(rt.clone()).await, rt)
}

/// An agent on `rt`, serving its data plane on a loopback port.
async fn serve(rt: Arc<FakeRuntime>) -> String {
    let agent = Agent::new(
        AgentConfig {
            node: "src".into(),
            controllers: vec![],
            advertise_addr: String::new(),
            report_every: Duration::from_secs(1),
            stop_grace: Duration::from_secs(1),
            labels: Vec::new(),
            images: Default::default(),
            tls: berth_proto::tls::Current::new(tls("src")),
            tls_dir: None,
            audit: None,
            protected_paths: Vec::new(),
            limits: Default::default(),
            resources: Default::default(),
        },
        rt.clone(),
        Arc::new(SimGpus::new(parse_spec("0").unwrap(), "src", None)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(crate::server::serve(agent, listener));
    addr
}

async fn source(archive: Vec<u8>) -> (String, Arc<FakeRuntime>) {
    source_of("img:1", archive).await
}

/// 5 MiB: a compressible half (text-like) and an incompressible half.
fn archive() -> Vec<u8> {
    let mut a: Vec<u8> = (0..5 << 19).map(|i| b"layer data "[i % 11]).collect();
    let mut x: u64 = 88172645463325252;
    a.extend((0..5 << 19).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }));
    a
}

fn target() -> Arc<FakeRuntime> {
    let rt = Arc::new(FakeRuntime::default());
    *rt.load_as.lock().unwrap() = Some(("img:1".into(), "sha256:abc".into()));
    rt
}

#[tokio::test]
async fn an_image_moves_whole_compressed_where_it_helps() {
    let data = archive();
    let (addr, _src) = source(data.clone()).await;
    let rt = target();
    let (tx, mut rx) = mpsc::channel(64);
    let id = fetch(
        rt.clone(),
        &tls("dst"),
        ImageOptions::default(),
        "img:1",
        &[addr],
        &tx,
        None,
    )
    .await
    .unwrap();
    assert_eq!(id, "sha256:abc");
    assert_eq!(rt.loaded.lock().unwrap()[0], data, "byte for byte");
    drop(tx);
    let mut last = TransferProgress::default();
    while let Some(p) = rx.recv().await {
        last = p;
    }
    assert!(last.done && last.bytes_done == data.len() as u64);
    // The compressible half shrank; the random half was sent as it was.
    assert!(last.wire_bytes < data.len() as u64 * 3 / 4, "{last:?}");
    assert!(last.wire_bytes > data.len() as u64 / 2, "{last:?}");
}

#[tokio::test]
async fn a_dead_holder_is_skipped_for_the_next() {
    let (addr, _src) = source(archive()).await;
    let dead = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().to_string()
    };
    let rt = target();
    let (tx, _rx) = mpsc::channel(64);
    let id = fetch(
        rt.clone(),
        &tls("dst"),
        ImageOptions::default(),
        "img:1",
        &[dead, addr],
        &tx,
        None,
    )
    .await
    .unwrap();
    assert_eq!(id, "sha256:abc");
}

#[test]
fn the_disk_check_refuses_what_cannot_fit() {
    let err = disk_check(100 << 20, 80 << 20, "img:1", "/var/lib/docker").unwrap_err();
    assert!(
        err.to_string().contains("not enough disk for img:1"),
        "{err}"
    );
    assert!(disk_check(200 << 20, 80 << 20, "img:1", "/var/lib/docker").is_ok());
}

#[tokio::test]
async fn a_corrupt_chunk_is_detected_and_nothing_is_loaded() {
    // Only exports of "bad:1" are damaged, so tests running beside this one
    // are not.
    crate::faults::tests::corrupt_exports_of("bad:1");
    let (addr, _src) = source_of("bad:1", archive()).await;
    let rt = Arc::new(FakeRuntime::default());
    *rt.load_as.lock().unwrap() = Some(("bad:1".into(), "sha256:abc".into()));
    let (tx, _rx) = mpsc::channel(64);
    let err = fetch(
        rt.clone(),
        &tls("dst"),
        ImageOptions::default(),
        "bad:1",
        &[addr],
        &tx,
        None,
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("does not match its checksum"),
        "{err}"
    );
    assert!(rt.loaded.lock().unwrap().is_empty(), "no load completed");
    assert!(rt.image("bad:1").await.unwrap().is_none());
}

/// Asks the agent at `addr` to fetch `img:1` from `sources`, relaying to
/// `downstream` agents; returns its final progress message.
async fn fetch_via(addr: &str, sources: Vec<String>, downstream: u32) -> TransferProgress {
    let ch = berth_proto::connect::endpoint(addr, &tls("ctl"), berth_proto::tls::NODE_DOMAIN)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = AgentServiceClient::new(ch);
    let mut s = c
        .fetch_image(berth_proto::internal::v1::FetchImageRequest {
            image: "img:1".into(),
            sources,
            image_size: 0,
            downstream,
        })
        .await
        .unwrap()
        .into_inner();
    let mut last = TransferProgress::default();
    while let Some(p) = s.message().await.unwrap() {
        last = p;
    }
    last
}

#[tokio::test]
async fn a_chain_reads_the_holder_once() {
    let data = archive();
    let (src, src_rt) = source(data.clone()).await;
    let (a_rt, b_rt) = (target(), target());
    let (a, b) = (serve(a_rt.clone()).await, serve(b_rt.clone()).await);
    // b reads from a while a receives from the holder.
    let (pa, pb) = tokio::join!(
        fetch_via(&a, vec![src.clone()], 1),
        fetch_via(&b, vec![a.clone(), src.clone()], 0)
    );
    assert!(pa.done && pb.done, "{pa:?} {pb:?}");
    assert_eq!(pb.source, a, "b was fed by a");
    assert_eq!(a_rt.loaded.lock().unwrap()[0], data);
    assert_eq!(b_rt.loaded.lock().unwrap()[0], data);
    let exports = src_rt
        .calls()
        .iter()
        .filter(|c| c.starts_with("export"))
        .count();
    assert_eq!(exports, 1, "the holder was read once");
}
