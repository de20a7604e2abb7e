//! Property tests: invariants every plan keeps, on random clusters and queues.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;

use super::*;

/// What any plan must respect, whatever the policy chose.
pub fn check_invariants(snap: &Snapshot, plan: &Plan) -> Result<(), String> {
    let nodes: HashMap<&str, &NodeView> =
        snap.nodes.iter().map(|n| (n.name.as_str(), &**n)).collect();
    let mut jobs: HashMap<&str, &QueuedJob> = HashMap::new();
    for j in snap.queue.iter() {
        if j.gang.is_empty() {
            jobs.insert(&j.id, j);
        }
        for t in &j.gang {
            jobs.insert(t, j);
        }
    }
    let mut whole: HashSet<&str> = HashSet::new();
    let mut slices: HashMap<&str, u64> = HashMap::new();
    let mut per_node: HashMap<&str, Vec<&QueuedJob>> = HashMap::new();
    let mut ports: HashSet<(&str, u32)> = HashSet::new();
    let mut cpu_mem: HashMap<&str, (u64, u64)> = HashMap::new();
    let mut placed: HashSet<&str> = HashSet::new();
    let mut held = snap.whole_held.clone();
    let mut live = snap.group_live.clone();
    for p in &plan.placements {
        let job = jobs
            .get(p.job_id.as_str())
            .ok_or(format!("unknown job {}", p.job_id))?;
        if !placed.insert(&p.job_id) {
            return Err(format!("{} placed twice", p.job_id));
        }
        let node = nodes.get(p.node.as_str()).ok_or("unknown node")?;
        if !job.constraints.iter().all(|c| c.holds(&node.labels)) {
            return Err(format!("{} breaks its constraints on {}", p.job_id, p.node));
        }
        let want = if job.gpus == 0 && job.memory > 0 {
            1
        } else {
            job.gpus as usize
        };
        if p.gpus.len() != want {
            return Err(format!(
                "{} got {} GPUs, wants {want}",
                p.job_id,
                p.gpus.len()
            ));
        }
        for g in &p.gpus {
            let gpu = node
                .gpus
                .iter()
                .find(|x| *x.uuid == *g.uuid)
                .ok_or("GPU not on node")?;
            if !fit::model_ok(gpu, &job.model) {
                return Err(format!("{} got a {} GPU", p.job_id, gpu.model));
            }
            if job.gpus > 0 {
                if gpu.use_ != GpuUse::Free
                    || slices.contains_key(g.uuid.as_str())
                    || !whole.insert(&g.uuid)
                {
                    return Err(format!("GPU {} over-committed ({:?})", g.uuid, gpu.use_));
                }
            } else {
                let base = match gpu.use_ {
                    GpuUse::Free => 0,
                    GpuUse::Shared(r) => r,
                    other => return Err(format!("slice on a {other:?} GPU {}", g.uuid)),
                };
                let sum = slices.entry(&g.uuid).or_insert(base);
                *sum += job.memory;
                if *sum > gpu.memory_total || whole.contains(g.uuid.as_str()) {
                    return Err(format!("GPU {} slices exceed its memory", g.uuid));
                }
            }
        }
        if p.ports.len() != job.pick_ports.len() {
            return Err(format!("{} got {} picked ports", p.job_id, p.ports.len()));
        }
        let (lo, hi) = snap.hosts.ports;
        for port in job.ports.iter().map(|(p, _)| p).chain(&p.ports) {
            if node.used_ports.contains(&(*port, "tcp".into())) || !ports.insert((&p.node, *port)) {
                return Err(format!("host port {port} given twice on {}", p.node));
            }
        }
        if p.ports.iter().any(|port| *port < lo || *port > hi) {
            return Err(format!("{} got a port outside {lo}-{hi}", p.job_id));
        }
        let held_here = cpu_mem
            .entry(&p.node)
            .or_insert((node.millicpus_held, node.memory_held));
        held_here.0 += p.millicpus;
        held_here.1 += p.memory_bytes;
        if (node.millicpus > 0 && held_here.0 > node.millicpus)
            || (node.memory_bytes > 0 && held_here.1 > node.memory_bytes)
        {
            return Err(format!(
                "{} over-commits CPU or memory on {}",
                p.job_id, p.node
            ));
        }
        if job.millicpus > 0 && p.millicpus != job.millicpus {
            return Err(format!(
                "{} asked {} CPU, holds {}",
                p.job_id, job.millicpus, p.millicpus
            ));
        }
        per_node.entry(&p.node).or_default().push(job);
        *held.entry(job.user.clone()).or_default() += job.gpus;
        if let Some((g, cap)) = &job.array {
            let n = live.entry(g.clone()).or_default();
            *n += 1;
            if *cap > 0 && *n > *cap {
                return Err(format!("array {g} runs over its cap {cap}"));
            }
        }
    }
    for (node, js) in &per_node {
        let n = nodes[node];
        if n.exclusive && !js.is_empty() {
            return Err(format!("job placed on {node}, held by an exclusive job"));
        }
        if js.iter().any(|j| j.exclusive) && (js.len() > 1 || n.live_jobs > 0) {
            return Err(format!("exclusive job shares {node}"));
        }
    }
    for j in snap.queue.iter().filter(|j| !j.gang.is_empty()) {
        let hosts: Vec<&str> = plan
            .placements
            .iter()
            .filter(|p| j.gang.contains(&p.job_id))
            .map(|p| p.node.as_str())
            .collect();
        let distinct: HashSet<&str> = hosts.iter().copied().collect();
        if !hosts.is_empty() && (hosts.len() != j.gang.len() || distinct.len() != hosts.len()) {
            return Err(format!(
                "gang {} placed partly or twice on a host: {hosts:?}",
                j.id
            ));
        }
    }
    for (user, quota) in &snap.quotas {
        let before = snap.whole_held.get(user).copied().unwrap_or(0);
        let after = held.get(user).copied().unwrap_or(0);
        if after > *quota && after > before {
            return Err(format!("{user} placed over quota: {after} > {quota}"));
        }
    }
    for (victim, for_job) in &plan.preemptions {
        let job = snap
            .queue
            .iter()
            .find(|j| &j.id == for_job)
            .ok_or("preempting for unknown job")?;
        let v = snap
            .nodes
            .iter()
            .flat_map(|n| &n.victims)
            .find(|v| &v.job_id == victim)
            .ok_or(format!("{victim} is not preemptible"))?;
        if v.priority >= job.priority {
            return Err(format!(
                "{victim} (priority {}) preempted for {for_job} (priority {})",
                v.priority, job.priority
            ));
        }
    }
    Ok(())
}

fn arb_node(i: usize) -> impl Strategy<Value = NodeView> {
    (
        1usize..=8,
        prop_oneof![Just("a100"), Just("h100")],
        proptest::collection::vec(0u8..6, 8),
        any::<bool>(),
    )
        .prop_map(move |(n, model, uses, labelled)| NodeView {
            name: format!("n{i}"),
            labels: if labelled {
                std::sync::Arc::new([("zone".to_string(), "r1".to_string())].into())
            } else {
                Default::default()
            },
            gpus: (0..n)
                .map(|g| GpuView {
                    index: g as u32,
                    uuid: format!("n{i}-{g}").into(),
                    model: model.into(),
                    memory_total: 80,
                    memory_free: 80,
                    group: if g < 4 { "lo".into() } else { "hi".into() },
                    use_: match uses[g] {
                        0 => GpuUse::Held,
                        1 => GpuUse::Foreign,
                        2 => GpuUse::Shared(40),
                        3 => GpuUse::Releasing,
                        _ => GpuUse::Free,
                    },
                })
                .collect(),
            images: std::sync::Arc::new(["img:1".to_string()].into()),
            used_ports: Default::default(),
            disk_free: 0,
            live_jobs: 0,
            exclusive: false,
            victims: Vec::new(),
            // Room for a few CPU-asking jobs, not for all of them.
            millicpus: 4000,
            memory_bytes: 64 << 30,
            ..Default::default()
        })
}

fn arb_job(i: usize) -> impl Strategy<Value = QueuedJob> {
    (
        0u32..=4,
        0u64..=3,
        0u8..4,
        -1i32..=1,
        0usize..=3,
        0u8..5,
        any::<bool>(),
    )
        .prop_map(
            move |(gpus, mem, user, priority, gang, kind, constrained)| {
                let gang = if gang >= 2 { gang } else { 0 };
                QueuedJob {
                    id: format!("j{i}"),
                    seq: i as u64 + 1,
                    user: format!("u{user}"),
                    priority,
                    gpus,
                    memory: mem * 20,
                    model: if kind == 0 {
                        "h100".into()
                    } else {
                        String::new()
                    },
                    constraints: if constrained {
                        vec![Constraint::Eq("zone".into(), "r1".into())]
                    } else {
                        Vec::new()
                    },
                    exclusive: kind == 1,
                    image: "img:1".into(),
                    ports: if kind == 2 {
                        vec![(8080, "tcp".into())]
                    } else {
                        Vec::new()
                    },
                    gang: (0..gang).map(|r| format!("j{i}.{r}")).collect(),
                    array: (kind == 3 && gang == 0).then(|| ("arr".to_string(), 2)),
                    not_before_ms: 0,
                    own_victims_only: false,
                    // Some jobs ask CPU (whole cores) and host ports.
                    millicpus: mem * 1000,
                    pick_ports: if kind == 4 {
                        vec!["tcp".into()]
                    } else {
                        Vec::new()
                    },
                    ..Default::default()
                }
            },
        )
}

fn arb_snapshot() -> impl Strategy<Value = Snapshot> {
    (1usize..=6, 0usize..=25, proptest::option::of(0u32..4)).prop_flat_map(|(n, j, quota)| {
        let nodes: Vec<_> = (0..n).map(arb_node).collect();
        let jobs: Vec<_> = (0..j).map(arb_job).collect();
        (nodes, jobs).prop_map(move |(mut nodes, queue)| {
            // Held GPUs belong to a preemptible priority -1 job each.
            for n in &mut nodes {
                for g in n.gpus.clone() {
                    if g.use_ == GpuUse::Held {
                        n.live_jobs += 1;
                        n.victims.push(Victim {
                            job_id: format!("v-{}", g.uuid),
                            priority: -1,
                            user: String::new(),
                            gpus: vec![g.index],
                        });
                    }
                }
            }
            let mut s = Snapshot {
                nodes: nodes.into_iter().map(std::sync::Arc::new).collect(),
                queue: std::sync::Arc::new(queue.into_iter().map(std::sync::Arc::new).collect()),
                ..Snapshot::default()
            };
            if let Some(q) = quota {
                s.quotas.insert("u0".into(), q);
            }
            s
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn plans_keep_the_invariants(snap in arb_snapshot()) {
        let plan = schedule(&snap);
        prop_assert_eq!(check_invariants(&snap, &plan), Ok(()));
        // Deterministic: the same snapshot gives the same plan.
        prop_assert_eq!(schedule(&snap), plan);
    }

    /// The fairness rule: with identical 1-GPU jobs of one priority, users
    /// who still have jobs queued after the pass hold GPU counts within one
    /// of each other (one turn per GPU, lowest usage first).
    #[test]
    fn fair_share_levels_users(per_user in proptest::collection::vec(0usize..12, 1..5), gpus in 1usize..16) {
        let node = NodeView {
            name: "n".into(),
            gpus: (0..gpus).map(|g| GpuView {
                                index: g as u32, uuid: format!("g{g}").into(), model: "a100".into(),
                memory_total: 80, memory_free: 80, group: "".into(), use_: GpuUse::Free,
            }).collect(),
                        images: std::sync::Arc::new(["img:1".to_string()].into()),
            ..NodeView::default()
        };
        let mut queue = Vec::new();
        // User 0's jobs are all submitted first: age alone would favour them.
        for (u, n) in per_user.iter().enumerate() {
            for k in 0..*n {
                queue.push(std::sync::Arc::new(QueuedJob {
                    id: format!("u{u}-{k}"), seq: queue.len() as u64 + 1, user: format!("u{u}"),
                    gpus: 1, image: "img:1".into(), ..QueuedJob::default()
                }));
            }
        }
        let snap = Snapshot { nodes: vec![std::sync::Arc::new(node)], queue: std::sync::Arc::new(queue), ..Snapshot::default() };
        let plan = schedule(&snap);
        let mut got: HashMap<String, usize> = HashMap::new();
        for p in &plan.placements {
            *got.entry(p.job_id.split('-').next().unwrap().to_string()).or_default() += 1;
        }
        let waiting: Vec<usize> = per_user.iter().enumerate()
            .filter(|(u, n)| got.get(&format!("u{u}")).copied().unwrap_or(0) < **n)
            .map(|(u, _)| got.get(&format!("u{u}")).copied().unwrap_or(0))
            .collect();
        if let (Some(lo), Some(hi)) = (waiting.iter().min(), waiting.iter().max()) {
            prop_assert!(hi - lo <= 1, "unfair: {got:?} of {per_user:?}");
        }
        // Users who got fewer than the waiting users' level got all they asked.
        for (u, n) in per_user.iter().enumerate() {
            let g = got.get(&format!("u{u}")).copied().unwrap_or(0);
            if let Some(lo) = waiting.iter().min() {
                prop_assert!(g >= *lo || g == *n, "u{u} starved: {got:?}");
            }
        }
    }
}
