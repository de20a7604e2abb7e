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
        self.hold(&p.job_id);
    }

    fn trial_release(&mut self, id: &str) {
        self.release(id);
        let job = self.jobs.get_mut(id).expect("checked");
        job.node = None;
        job.gpus.clear();
        // release() dropped the name of a live job: give it back.
        self.live_names.insert(job.name.clone(), id.to_string());
    }

    fn apply_placement(&mut self, index: u64, p: &Placement) {
        let job = self.jobs.get_mut(&p.job_id).expect("checked");
        job.state = super::JobState::Placed;
        job.node = Some(p.node.clone());
        job.gpus = p.gpus.clone();
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
        let want = if slice { 1 } else { spec.gpus as usize };
        if p.gpus.len() != want {
            return Err(format!("{} GPUs given, {want} asked", p.gpus.len()));
        }
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
        for port in &spec.ports {
            if let Some(other) = self.host_port_holder(&p.node, port.host_port, &port.protocol) {
                return Err(format!(
                    "host port {} is held by live job {other}",
                    port.host_port
                ));
            }
        }
        if let Some(&quota) = self.quotas.get(&spec.user) {
            if spec.gpus > 0 && self.user_gpus(&spec.user) + spec.gpus > quota {
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
}
