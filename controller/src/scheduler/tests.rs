//! Scenario files in `testdata/scheduler/`: a cluster and a queue, `----`,
//! then the expected plan: `JOB NODE [GPU,...]` per placement, then
//! `preempt VICTIM for JOB` and `reserve JOB HOST,...` lines. The format is
//! described in `testdata/scheduler/README.md`.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::*;

type Kv = HashMap<String, String>;

fn parse_kv(words: &[&str]) -> Kv {
    // A bare word is a flag: present with an empty value.
    words
        .iter()
        .map(|w| w.split_once('=').unwrap_or((w, "")))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn list(s: Option<&String>) -> Vec<String> {
    s.filter(|s| !s.is_empty())
        .map(|s| s.split(',').map(String::from).collect())
        .unwrap_or_default()
}

fn nums(s: Option<&String>) -> Vec<u32> {
    list(s).iter().map(|i| i.parse().unwrap()).collect()
}

/// "80G", "512M", "100" (bytes).
pub fn size(s: &str) -> u64 {
    let (n, mult) = match s.chars().last() {
        Some('G') => (&s[..s.len() - 1], 1u64 << 30),
        Some('M') => (&s[..s.len() - 1], 1 << 20),
        _ => (s, 1),
    };
    n.parse::<u64>().unwrap() * mult
}

fn node(name: &str, kv: &Kv) -> NodeView {
    let n: u32 = kv["gpus"].parse().unwrap();
    let mem = kv.get("mem").map_or(80 << 30, |m| size(m));
    let used: HashSet<u32> = nums(kv.get("used")).into_iter().collect();
    let foreign: HashSet<u32> = nums(kv.get("foreign")).into_iter().collect();
    let releasing: HashSet<u32> = nums(kv.get("releasing")).into_iter().collect();
    // shared=INDEX:SIZE,...
    let shared: HashMap<u32, u64> = list(kv.get("shared"))
        .iter()
        .map(|s| {
            let (i, b) = s.split_once(':').unwrap();
            (i.parse().unwrap(), size(b))
        })
        .collect();
    // groups=0-1,2-3: index ranges that are close to each other.
    let mut group_of = HashMap::new();
    for (gi, r) in list(kv.get("groups")).iter().enumerate() {
        let (a, b) = r.split_once('-').unwrap();
        for i in a.parse::<u32>().unwrap()..=b.parse().unwrap() {
            group_of.insert(i, format!("g{gi}"));
        }
    }
    NodeView {
        name: name.to_string(),
        labels: list(kv.get("labels"))
            .iter()
            .map(|l| {
                let (k, v) = l.split_once(':').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect::<BTreeMap<_, _>>()
            .into(),
        gpus: (0..n)
            .map(|i| GpuView {
                index: i,
                uuid: format!("{name}-{i}").into(),
                model: kv.get("model").map_or("a100", |m| m).to_lowercase().into(),
                memory_total: mem,
                memory_free: mem,
                group: group_of.get(&i).cloned().unwrap_or_default().into(),
                use_: if used.contains(&i) {
                    GpuUse::Held
                } else if foreign.contains(&i) {
                    GpuUse::Foreign
                } else if releasing.contains(&i) {
                    GpuUse::Releasing
                } else if let Some(b) = shared.get(&i) {
                    GpuUse::Shared(*b)
                } else {
                    GpuUse::Free
                },
            })
            .collect(),
        images: std::sync::Arc::new(
            list(kv.get("images"))
                .into_iter()
                .map(|i| normalize_image(&i))
                .collect(),
        ),
        used_ports: nums(kv.get("ports"))
            .into_iter()
            .map(|p| (p, "tcp".to_string()))
            .collect(),
        disk_free: kv.get("disk").map_or(u64::MAX, |d| size(d)),
        live_jobs: (used.len() + releasing.len() + shared.len()) as u32,
        exclusive: kv.contains_key("exclusive"),
        victims: Vec::new(),
        millicpus: kv
            .get("cpus")
            .map_or(0, |c| c.parse::<u64>().unwrap() * 1000),
        memory_bytes: kv.get("ram").map_or(0, |m| size(m)),
        millicpus_held: kv
            .get("cpus_held")
            .map_or(0, |c| c.parse::<u64>().unwrap() * 1000),
        memory_held: kv.get("ram_held").map_or(0, |m| size(m)),
    }
}

fn job(id: &str, kv: &Kv, seq: u64) -> QueuedJob {
    let tasks: u32 = kv.get("gang").map_or(0, |g| g.parse().unwrap());
    QueuedJob {
        id: id.to_string(),
        seq: kv.get("seq").map_or(seq, |s| s.parse().unwrap()),
        user: kv.get("user").cloned().unwrap_or_default(),
        priority: kv.get("prio").map_or(0, |p| p.parse().unwrap()),
        gpus: kv
            .get("gpus")
            .filter(|g| *g != "all")
            .map_or(0, |g| g.parse().unwrap()),
        all_gpus: kv.get("gpus").is_some_and(|g| g == "all"),
        millicpus: kv
            .get("cpus")
            .map_or(0, |c| c.parse::<u64>().unwrap() * 1000),
        memory_bytes: kv.get("ram").map_or(0, |m| size(m)),
        pick_ports: vec!["tcp".to_string(); kv.get("pick").map_or(0, |n| n.parse().unwrap())],
        memory: kv.get("mem").map_or(0, |m| size(m)),
        model: kv.get("model").cloned().unwrap_or_default().to_lowercase(),
        constraints: list(kv.get("constraint"))
            .iter()
            .map(|c| Constraint::parse(&c.replace(':', "=")).unwrap())
            .collect(),
        exclusive: kv.contains_key("exclusive"),
        image: normalize_image(&kv["image"]),
        ports: nums(kv.get("ports"))
            .into_iter()
            .map(|p| (p, "tcp".to_string()))
            .collect(),
        gang: (0..tasks).map(|r| format!("{id}.{r}")).collect(),
        array: kv.get("array").map(|a| {
            let (g, cap) = a.split_once(':').unwrap();
            (g.to_string(), cap.parse().unwrap())
        }),
        not_before_ms: kv.get("not_before").map_or(0, |t| t.parse().unwrap()),
        // role=user: a user's job, which preempts only its owner's jobs.
        own_victims_only: kv.get("role").is_some_and(|r| r == "user"),
    }
}

pub fn load(text: &str) -> (Snapshot, Vec<String>) {
    let (setup, expected) = text.split_once("----").expect("scenario needs ----");
    let mut snap = Snapshot::default();
    for (seq, line) in setup
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .enumerate()
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        let kv = parse_kv(&words[1..]);
        match words[0] {
            "node" => snap.nodes.push(std::sync::Arc::new(node(words[1], &kv))),
            "job" => std::sync::Arc::make_mut(&mut snap.queue).push(std::sync::Arc::new(job(
                words[1],
                &kv,
                seq as u64 + 1,
            ))),
            // victim JOB node=N gpus=0,1 prio=P: a live preemptible job.
            "victim" => {
                let n = snap
                    .nodes
                    .iter_mut()
                    .find(|n| n.name == kv["node"])
                    .map(std::sync::Arc::make_mut)
                    .unwrap();
                let gpus = nums(kv.get("gpus"));
                for g in &gpus {
                    n.gpus[*g as usize].use_ = GpuUse::Held;
                }
                n.live_jobs += 1;
                n.victims.push(Victim {
                    job_id: words[1].to_string(),
                    priority: kv.get("prio").map_or(0, |p| p.parse().unwrap()),
                    user: kv.get("user").map(|u| u.to_string()).unwrap_or_default(),
                    gpus,
                });
            }
            // cpuquota USER=CORES: what their CPU quota has left.
            "cpuquota" => {
                for (k, v) in kv {
                    let left = v.parse::<u64>().unwrap() * 1000;
                    snap.host_quota_left.insert(k, (left, u64::MAX));
                }
            }
            // quota USER=GPUS / usage USER=GPUS (whole) / live GROUP=N
            "quota" | "usage" | "live" => {
                for (k, v) in kv {
                    let v: u32 = v.parse().unwrap();
                    match words[0] {
                        "quota" => snap.quotas.insert(k, v),
                        "usage" => {
                            snap.usage.insert(k.clone(), v as u64 * 1000);
                            snap.whole_held.insert(k, v)
                        }
                        _ => snap.group_live.insert(k, v),
                    };
                }
            }
            // image REF=SIZE: a known image size; enables moving images.
            "image" => {
                snap.move_images = true;
                for (k, v) in kv {
                    snap.image_sizes.insert(normalize_image(&k), size(&v));
                }
            }
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

pub fn render(plan: &Plan) -> Vec<String> {
    let mut out: Vec<String> = plan
        .placements
        .iter()
        .map(|p| {
            let gpus: Vec<String> = p.gpus.iter().map(|g| g.index.to_string()).collect();
            let mut line = format!("{} {} {}", p.job_id, p.node, gpus.join(","))
                .trim_end()
                .to_string();
            if !p.ports.is_empty() {
                let ports: Vec<String> = p.ports.iter().map(u32::to_string).collect();
                line += &format!(" ports={}", ports.join(","));
            }
            if p.millicpus > 0 {
                line += &format!(" cpu={}m", p.millicpus);
            }
            if p.memory_bytes > 0 {
                line += &format!(" ram={}M", p.memory_bytes >> 20);
            }
            line
        })
        .collect();
    out.extend(
        plan.preemptions
            .iter()
            .map(|(v, f)| format!("preempt {v} for {f}")),
    );
    if let Some((j, hosts)) = &plan.reserved {
        out.push(format!("reserve {j} {}", hosts.join(",")));
    }
    out
}

#[test]
fn scenarios() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/scheduler");
    let mut ran = 0;
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    paths.sort();
    let mut failures = Vec::new();
    for path in paths {
        let (snap, expected) = load(&std::fs::read_to_string(&path).unwrap());
        let plan = schedule(&snap);
        if render(&plan) != expected {
            failures.push(format!(
                "{}:\n  expected {:?}\n  got      {:?}",
                path.display(),
                expected,
                render(&plan)
            ));
        }
        super::props::check_invariants(&snap, &plan)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        ran += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(ran >= 12, "scenario files missing ({ran})");
}

#[test]
fn explain_counts_hosts_per_reason() {
    let (snap, _) = load(
        "node a gpus=2 model=a100 images=img:1\n\
         node b gpus=2 model=h100 images=img:1\n\
         node c gpus=2 model=h100 images=img:1 used=0\n\
         node d gpus=2 model=h100 images=other:1\n\
         job j gpus=2 model=h100 image=img:1\n\
         job k gpus=2 image=img:1\n----\n",
    );
    let e = explain(
        &snap,
        "k",
        &[(
            "not reporting (agent down)".to_string(),
            vec!["e".to_string()],
        )],
    )
    .unwrap();
    // k alone: a and b fit, c has one GPU held, d lacks the image.
    let reasons: HashMap<&str, usize> =
        e.hosts.iter().map(|(r, h)| (r.as_str(), h.len())).collect();
    assert_eq!(reasons["fits now"], 2, "{e:?}");
    assert_eq!(reasons["too few free GPUs"], 1, "{e:?}");
    assert_eq!(
        reasons["no image img:1 (not moved between hosts)"], 1,
        "{e:?}"
    );
    assert_eq!(reasons["not reporting (agent down)"], 1, "{e:?}");
    assert!(e.summary.contains("placeable now"), "{e:?}");
    let (snap, _) =
        load("node a gpus=2 model=a100 images=img:1\njob j gpus=1 model=v100 image=img:1\n----\n");
    let e = explain(&snap, "j", &[]).unwrap();
    assert!(e.summary.contains("no host can run it"), "{e:?}");
    assert_eq!(e.hosts[0].0, "no v100 GPU (or fewer than 1)");
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

#[test]
fn constraints_parse_and_match() {
    let labels: BTreeMap<String, String> = [("zone".to_string(), "rack2".to_string())].into();
    assert!(Constraint::parse("zone=rack2").unwrap().holds(&labels));
    assert!(!Constraint::parse("zone!=rack2").unwrap().holds(&labels));
    assert!(Constraint::parse("gpu!=old").unwrap().holds(&labels));
    assert!(Constraint::parse("=x").is_none());
    assert!(Constraint::parse("novalue").is_none());
}
