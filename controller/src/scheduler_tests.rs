//! Scenario files in `testdata/scheduler/`: a cluster and a queue, `----`,
//! then the expected plan, one placement per line (`JOB NODE [GPU,...]`).

use std::collections::{BTreeSet, HashSet};

use super::*;

fn parse_kv(words: &[&str]) -> std::collections::HashMap<String, String> {
    words
        .iter()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn list(s: Option<&String>) -> Vec<String> {
    s.map(|s| s.split(',').map(String::from).collect())
        .unwrap_or_default()
}

fn load(text: &str) -> (Snapshot, Vec<String>) {
    let (setup, expected) = text.split_once("----").expect("scenario needs ----");
    let mut snap = Snapshot::default();
    for line in setup
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        let kv = parse_kv(&words[2..]);
        match words[0] {
            "node" => {
                let n: u32 = kv["gpus"].parse().unwrap();
                let taken: HashSet<u32> = list(kv.get("used"))
                    .iter()
                    .chain(list(kv.get("foreign")).iter())
                    .map(|i| i.parse().unwrap())
                    .collect();
                snap.nodes.push(NodeView {
                    name: words[1].to_string(),
                    free_gpus: (0..n)
                        .filter(|i| !taken.contains(i))
                        .map(|i| GpuSlot {
                            index: i,
                            uuid: format!("{}-{i}", words[1]),
                        })
                        .collect::<BTreeSet<_>>(),
                    images: list(kv.get("images")).into_iter().collect(),
                    used_ports: list(kv.get("ports"))
                        .iter()
                        .map(|p| (p.parse().unwrap(), "tcp".to_string()))
                        .collect(),
                });
            }
            "job" => snap.queue.push(QueuedJob {
                id: words[1].to_string(),
                gpus: kv["gpus"].parse().unwrap(),
                image: kv["image"].clone(),
                ports: list(kv.get("ports"))
                    .iter()
                    .map(|p| (p.parse().unwrap(), "tcp".to_string()))
                    .collect(),
            }),
            other => panic!("unknown line kind {other}"),
        }
    }
    let expected = expected
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    (snap, expected)
}

fn render(plan: &[Placement]) -> Vec<String> {
    plan.iter()
        .map(|p| {
            let gpus: Vec<String> = p.gpus.iter().map(|g| g.index.to_string()).collect();
            format!("{} {} {}", p.job_id, p.node, gpus.join(","))
                .trim_end()
                .to_string()
        })
        .collect()
}

#[test]
fn scenarios() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/scheduler");
    let mut ran = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let (snap, expected) = load(&std::fs::read_to_string(&path).unwrap());
        let plan = schedule(&snap);
        assert_eq!(render(&plan), expected, "scenario {}", path.display());
        // Whatever the scenario: a GPU is never given twice in one plan.
        let mut seen = HashSet::new();
        for g in plan.iter().flat_map(|p| &p.gpus) {
            assert!(
                seen.insert(g.uuid.clone()),
                "{} given twice in {}",
                g.uuid,
                path.display()
            );
        }
        ran += 1;
    }
    assert!(ran >= 5, "scenario files missing");
}

#[test]
fn image_references_normalise_like_docker() {
    let images: HashSet<String> = [
        "busybox:latest".to_string(),
        "sha256:52fb3fe7baf9aaaa".to_string(),
    ]
    .into();
    assert!(has_image(&images, "busybox"));
    assert!(has_image(&images, "docker.io/library/busybox:latest"));
    assert!(has_image(&images, "52fb3fe7baf9"));
    assert!(!has_image(&images, "busybox:1.36"));
    assert!(!has_image(&images, "52fb"));
}
