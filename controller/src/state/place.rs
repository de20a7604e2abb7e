//! Applying a plan: preemptions first, then placements, each re-checked
//! against the replicated state (never the scheduler's view of it). A gang's
//! placements apply all together or not at all.

use std::collections::{BTreeMap, HashSet};

use super::JobState;

use super::{is_slice, Applied, Constraint, GroupKind, Placement, Rejection, State};

impl State {
    pub(super) fn place(
        &mut self,
        index: u64,
        placements: &[Placement],
        preemptions: &[String],
    ) -> Applied {
        let mut applied = Applied::default();
        for victim in preemptions {
            match self.preempt(index, victim) {
                Ok(()) => applied.jobs.push(victim.clone()),
                Err(why) => applied.rejected.push(Rejection::BadPlacement {
                    job: victim.clone(),
                    why: format!("cannot preempt: {why}"),
                }),
            }
        }
        // Gang tasks are applied as a unit, in plan order of their first task.
        let mut units: Vec<Vec<&Placement>> = Vec::new();
        let mut gang_unit: BTreeMap<String, usize> = BTreeMap::new();
        for p in placements {
            let group = self
                .jobs
                .get(&p.job_id)
                .map(|j| j.group.clone())
                .unwrap_or_default();
            let gang = self
                .groups
                .get(&group)
                .is_some_and(|g| g.kind == GroupKind::Gang);
            if gang {
                if let Some(&u) = gang_unit.get(&group) {
                    units[u].push(p);
                    continue;
                }
                gang_unit.insert(group, units.len());
            }
            units.push(vec![p]);
        }
        // Fx: the queue below is scanned with it, 100,000 ids at a time.
        let mut placed = rustc_hash::FxHashSet::default();
        for unit in units {
            match self.check_unit(&unit) {
                Ok(()) => {
                    for p in unit {
                        self.apply_placement(index, p);
                        placed.insert(p.job_id.clone());
                        applied.jobs.push(p.job_id.clone());
                    }
                }
                Err((job, why)) => applied.rejected.push(Rejection::BadPlacement { job, why }),
            }
        }
        for (group, _) in gang_unit {
            if self.groups[&group].tasks.iter().all(|t| placed.contains(t)) {
                self.gang_env(&group);
            }
        }
        // One pass over the queue for the whole plan, not one per placement.
        if !placed.is_empty() {
            self.queue.retain(|id| !placed.contains(id));
        }
        applied
    }

    fn preempt(&mut self, index: u64, id: &str) -> Result<(), String> {
        let job = self.jobs.get_mut(id).ok_or("no such job")?;
        if !job.spec.preemptible {
            return Err("it is not preemptible".into());
        }
        if !matches!(
            job.state,
            JobState::Placed | JobState::Pulling | JobState::Running
        ) {
            return Err(format!("it is {}", job.state.word()));
        }
        job.state = JobState::Stopping;
        job.stop_index = index;
        job.requeue = true;
        if let Some(node) = job.node.clone() {
            self.touch(&node);
        }
        Ok(())
    }

    /// Checks a unit (one job, or every task of a gang) as if applied in order.
    fn check_unit(&mut self, unit: &[&Placement]) -> Result<(), (String, String)> {
        let first = &self
            .jobs
            .get(&unit[0].job_id)
            .ok_or((unit[0].job_id.clone(), "no such job".to_string()))?;
        if let Some(g) = self
            .groups
            .get(&first.group)
            .filter(|g| g.kind == GroupKind::Gang)
        {
            let ids: HashSet<&String> = unit.iter().map(|p| &p.job_id).collect();
            let nodes: HashSet<&String> = unit.iter().map(|p| &p.node).collect();
            if ids.len() != g.tasks.len() || !g.tasks.iter().all(|t| ids.contains(t)) {
                return Err((g.id.clone(), "a gang is placed whole or not at all".into()));
            }
            if nodes.len() != unit.len() {
                return Err((g.id.clone(), "gang tasks must be on distinct hosts".into()));
            }
        }
        // Check each, holding the ones before it, then undo: the unit applies
        // only when every member passes.
        let mut held = Vec::new();
        let mut result = Ok(());
        for p in unit {
            if let Err(why) = self.check_placement(p) {
                result = Err((p.job_id.clone(), why));
                break;
            }
            self.trial_hold(p);
            held.push(p.job_id.clone());
        }
        for id in held {
            self.trial_release(&id);
        }
        result
    }

    fn trial_hold(&mut self, p: &Placement) {
        let job = self.jobs.get_mut(&p.job_id).expect("checked");
        job.node = Some(p.node.clone());
        job.gpus = p.gpus.clone();
        job.picked_ports = p.ports.clone();
        job.millicpus = p.millicpus;
        job.memory_bytes = p.memory_bytes;
        self.hold(&p.job_id);
    }

    fn trial_release(&mut self, id: &str) {
        self.release(id);
        let job = self.jobs.get_mut(id).expect("checked");
        job.unplace();
        // release() dropped the name of a live job: give it back.
        self.live_names.insert(job.name.clone(), id.to_string());
    }

    fn apply_placement(&mut self, index: u64, p: &Placement) {
        let job = self.jobs.get_mut(&p.job_id).expect("checked");
        job.state = super::JobState::Placed;
        job.node = Some(p.node.clone());
        job.gpus = p.gpus.clone();
        job.picked_ports = p.ports.clone();
        job.millicpus = p.millicpus;
        job.memory_bytes = p.memory_bytes;
        job.placed_index = index;
        job.message.clear();
        self.hold(&p.job_id);
    }

    /// The invariants a placement must keep, whatever the scheduler thought.
    fn check_placement(&self, p: &Placement) -> Result<(), String> {
        let job = self.jobs.get(&p.job_id).ok_or("no such job")?;
        if job.state != JobState::Queued {
            return Err(format!("job is {}", job.state.word()));
        }
        let node = self.nodes.get(&p.node).ok_or("no such node")?;
        if self.is_cordoned(&p.node) {
            return Err(format!("node {} is cordoned", p.node));
        }
        let spec = &job.spec;
        let slice = is_slice(spec);
        let want = if slice {
            1
        } else if spec.gpus_all {
            node.gpus.len().max(1)
        } else {
            spec.gpus as usize
        };
        if p.gpus.len() != want {
            return Err(format!("{} GPUs given, {want} asked", p.gpus.len()));
        }
        self.check_host_resources(p, node)?;
        for c in &spec.constraints {
            if !Constraint::parse(c).is_some_and(|c| c.holds(&node.labels)) {
                return Err(format!("node {} does not satisfy {c}", p.node));
            }
        }
        if let Some(owner) = self.exclusive_holder(&p.node) {
            return Err(format!("node {} is held whole by job {owner}", p.node));
        }
        if spec.exclusive && self.jobs_on(&p.node).next().is_some() {
            return Err(format!(
                "node {} is not empty; the job asks for the whole host",
                p.node
            ));
        }
        let model = spec.gpu_model.to_lowercase();
        let mut seen = HashSet::new();
        for g in &p.gpus {
            let inv = node
                .gpus
                .iter()
                .find(|inv| inv.uuid == g.uuid && inv.index == g.index)
                .ok_or_else(|| format!("GPU {} is not on node {}", g.uuid, p.node))?;
            if !seen.insert(&g.uuid) {
                return Err(format!("GPU {} given twice", g.uuid));
            }
            if !inv.model.to_lowercase().contains(&model) {
                return Err(format!(
                    "GPU {} is a {}, not a {}",
                    g.uuid, inv.model, spec.gpu_model
                ));
            }
            if let Some(holder) = self.gpu_holder(&g.uuid) {
                return Err(format!("GPU {} is held by live job {holder}", g.uuid));
            }
            let sliced: u64 = self.gpu_slices(&g.uuid).map_or(0, |s| s.values().sum());
            if slice {
                if sliced + spec.gpu_memory_bytes > inv.memory_total_bytes {
                    return Err(format!(
                        "GPU {} has no room for a {}-byte slice",
                        g.uuid, spec.gpu_memory_bytes
                    ));
                }
            } else if sliced > 0 {
                return Err(format!("GPU {} is shared by slice jobs", g.uuid));
            } else if inv.memory_total_bytes < spec.gpu_memory_bytes {
                return Err(format!("GPU {} has less memory than asked", g.uuid));
            }
        }
        if let Some(&quota) = self.quotas.get(&spec.user) {
            let gpus = if spec.gpus_all {
                p.gpus.len() as u32
            } else if slice {
                0
            } else {
                spec.gpus
            };
            if gpus > 0 && self.user_gpus(&spec.user) + gpus > quota {
                return Err(format!(
                    "user {:?} would exceed their quota of {quota} GPUs",
                    spec.user
                ));
            }
        }
        if let Some(g) = self.groups.get(&job.group).filter(|g| g.max_running > 0) {
            if self.group_live(&g.id) >= g.max_running {
                return Err(format!(
                    "array {} already runs {} tasks",
                    g.id, g.max_running
                ));
            }
        }
        Ok(())
    }

    /// Host ports (the job's own and those picked for it) and, from format
    /// 6, the CPU and memory the placement holds. A placement holding none
    /// (as every older one) passes the capacity check alike on every replica.
    fn check_host_resources(&self, p: &Placement, node: &super::NodeRecord) -> Result<(), String> {
        let spec = &self.jobs[&p.job_id].spec;
        let to_pick = super::ports_to_pick(spec).len();
        if p.ports.len() != to_pick {
            return Err(format!(
                "{} host ports picked, {to_pick} needed",
                p.ports.len()
            ));
        }
        let mut mine = HashSet::new();
        for port in super::published(spec, &p.ports) {
            if !(1..=65535).contains(&port.host_port) {
                return Err(format!("host port {} is out of range", port.host_port));
            }
            let proto = super::norm_proto(&port.protocol);
            if !mine.insert((port.host_port, proto.clone())) {
                return Err(format!("host port {} given twice", port.host_port));
            }
            if let Some(other) = self.host_port_holder(&p.node, port.host_port, &proto) {
                return Err(format!(
                    "host port {} is held by live job {other}",
                    port.host_port
                ));
            }
        }
        let spec_user = &self.jobs[&p.job_id].spec.user;
        if let Some(&(cpu_q, mem_q)) = self.host_quotas.get(spec_user) {
            let (cpu, mem) = self.user_held(spec_user);
            // Only what this placement holds is checked: one holding none
            // passes, even for a user over a quota lowered since.
            let over_cpu = p.millicpus > 0 && cpu_q > 0 && cpu + p.millicpus > cpu_q;
            let over_mem = p.memory_bytes > 0 && mem_q > 0 && mem + p.memory_bytes > mem_q;
            if over_cpu || over_mem {
                return Err(format!(
                    "user {spec_user:?} would exceed their CPU or memory quota"
                ));
            }
        }
        let (cpu_held, mem_held) = self.held_on(&p.node);
        if p.millicpus > 0 && node.millicpus > 0 && cpu_held + p.millicpus > node.millicpus {
            return Err(format!(
                "node {} has {} of {} thousandths of a CPU free, {} asked",
                p.node,
                node.millicpus.saturating_sub(cpu_held),
                node.millicpus,
                p.millicpus
            ));
        }
        if p.memory_bytes > 0
            && node.memory_bytes > 0
            && mem_held + p.memory_bytes > node.memory_bytes
        {
            return Err(format!(
                "node {} has {} of {} bytes of memory free, {} asked",
                p.node,
                node.memory_bytes.saturating_sub(mem_held),
                node.memory_bytes,
                p.memory_bytes
            ));
        }
        Ok(())
    }
}
