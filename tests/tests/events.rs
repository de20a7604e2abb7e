//! Resumable watches: list, then watch from the list's revision, and get
//! exactly what happened after it; a revision beyond the history is told
//! to list again.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_proto::v1::event_service_client::EventServiceClient;
use berth_proto::v1::job_service_client::JobServiceClient;
use berth_proto::v1::{event, Event, ListJobsRequest, WatchRequest};
use berth_tests::*;

/// (revision, job id, state) of each job event, in order.
type Seen = Vec<(u64, String, i32)>;

fn seen(events: &[Event]) -> Seen {
    events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(event::Kind::Job(j)) => Some((e.index, j.id.clone(), j.state)),
            _ => None,
        })
        .collect()
}

/// Everything a stream sends until it is quiet for `idle`.
async fn drain(stream: &mut tonic::Streaming<Event>, idle: Duration) -> Vec<Event> {
    let mut out = Vec::new();
    while let Ok(Some(Ok(e))) = tokio::time::timeout(idle, stream.message())
        .await
        .map(|r| r.transpose())
    {
        out.push(e);
    }
    out
}

#[test]
fn a_watch_from_a_lists_revision_gets_exactly_what_came_after_it() {
    let mut c = Cluster::start_with(1, &["--event-history", "30"]);
    c.add_agent(2);
    let early = c.run_detached(&[IMAGE, "true"]);
    c.wait_state(&early, "exited");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dial = c.dial();
    let addr = c.controllers[0].addr.clone();
    rt.block_on(async {
        let channel = dial.endpoint(&addr).unwrap().connect().await.unwrap();
        let authed = berth_proto::connect::authed(channel, dial.bearer.clone());
        let mut events = EventServiceClient::new(authed.clone());
        // A watcher that saw everything live, for comparison.
        let mut live = events
            .watch(WatchRequest::default())
            .await
            .unwrap()
            .into_inner();
        let listed = JobServiceClient::new(authed.clone())
            .list_jobs(ListJobsRequest {
                all: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let revision = listed.revision;
        assert!(revision > 0);
        let jobs: Vec<String> = (0..3).map(|_| c.run_detached(&[IMAGE, "true"])).collect();
        for j in &jobs {
            c.wait_state(j, "exited");
        }
        let mut resumed = events
            .watch(WatchRequest {
                from_revision: revision,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let all_live = drain(&mut live, Duration::from_secs(2)).await;
        let got = seen(&drain(&mut resumed, Duration::from_secs(2)).await);
        let want: Seen = seen(&all_live)
            .into_iter()
            .filter(|(index, _, _)| *index > revision)
            .collect();
        assert!(!want.is_empty());
        assert_eq!(got, want, "exactly the events after revision {revision}");
        let mut unique = got.clone();
        unique.dedup();
        assert_eq!(unique.len(), got.len(), "none twice");
        for j in &jobs {
            assert!(got.iter().any(|(_, id, _)| id == j), "{j} in the replay");
        }
        assert!(
            !got.iter().any(|(_, id, _)| *id == early),
            "nothing before it"
        );

        // The CLI: one JSON object per line, from the same revision.
        let mut cli = c
            .cli()
            .args([
                "--addr",
                &c.addr,
                "events",
                "--since",
                &revision.to_string(),
            ])
            .args(["--job", &jobs[0], "-o", "json"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = std::io::BufReader::new(cli.stdout.take().unwrap()).lines();
        let mut states = Vec::new();
        for line in lines {
            let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            assert_eq!(v["job"]["id"], jobs[0].as_str());
            assert!(v["revision"].as_u64().unwrap() > revision);
            let state = v["job"]["state"].as_str().unwrap().to_string();
            states.push(state.clone());
            if state == "exited" {
                break;
            }
        }
        let _ = cli.kill();
        let _ = cli.wait();
        assert_eq!(
            states.first().map(String::as_str),
            Some("queued"),
            "{states:?}"
        );

        // Push the revision out of the 30-event history: list again.
        let more: Vec<String> = (0..12).map(|_| c.run_detached(&[IMAGE, "true"])).collect();
        for j in &more {
            c.wait_state(j, "exited");
        }
        let e = events
            .watch(WatchRequest {
                from_revision: revision,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::OutOfRange, "{e:?}");
        assert!(e.message().contains("list again"), "{e:?}");
    });
}

#[test]
fn events_say_what_to_fix_for_a_bad_filter() {
    let c = Cluster::start();
    let out = Command::new(bin("berth"))
        .env("BERTH_CONFIG", c.config_path())
        .args(["--addr", &c.addr, "events", "--kind", "pods"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "refused by the CLI");
    let out = c.berth(&["events", "--job", "no-such-job"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no-such-job"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
