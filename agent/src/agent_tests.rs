use super::*;
use crate::gpu::{parse_spec, SimGpus};
use crate::runtime::fake::FakeRuntime;
use berth_proto::v1::{GpuRef, JobSpec, JobState};

fn agent(rt: Arc<FakeRuntime>) -> Arc<Agent> {
    let cfg = AgentConfig {
        node: "n1".into(),
        controllers: vec![],
        advertise_addr: "x".into(),
        report_every: Duration::from_secs(1),
        stop_grace: Duration::from_secs(1),
        labels: Vec::new(),
        images: Default::default(),
        tls: berth_proto::tls::Current::new(berth_proto::tls::Tls::ca_only(String::new())),
        tls_dir: None,
        audit: None,
        protected_paths: Vec::new(),
        limits: Default::default(),
        resources: Default::default(),
    };
    Agent::new(
        cfg,
        rt,
        Arc::new(SimGpus::new(parse_spec("2").unwrap(), "n1", None)),
    )
}

fn desired(state: JobState) -> DesiredAllocations {
    DesiredAllocations {
        revision: 7,
        policy_toml: String::new(),
        allocations: vec![Allocation {
            job_id: "j1".into(),
            job_name: "train".into(),
            spec: Some(JobSpec {
                image: "busybox:latest".into(),
                gpus: 1,
                ..Default::default()
            }),
            gpus: vec![GpuRef {
                index: 0,
                uuid: "GPU-x".into(),
            }],
            state: state as i32,
            extra_env: Vec::new(),
            attempt: 0,
            owner_role: "user".into(),
            keep_when_lost: false,
        }],
    }
}

#[tokio::test]
async fn reconcile_twice_creates_once_and_reports_revision() {
    let rt = Arc::new(FakeRuntime::default());
    let a = agent(rt.clone());
    let mut failed = HashMap::new();
    let r1 = a
        .reconcile("cl", Some(&desired(JobState::Placed)), &mut failed)
        .await
        .unwrap();
    let r2 = a
        .reconcile("cl", Some(&desired(JobState::Placed)), &mut failed)
        .await
        .unwrap();
    assert_eq!(rt.calls(), vec!["create j1"]);
    assert_eq!(r1.observed_revision, 7);
    assert_eq!(r2.containers.len(), 1);
    assert_eq!(r2.gpus.len(), 2);
}

#[tokio::test]
async fn failed_create_is_reported_and_not_retried() {
    let rt = Arc::new(FakeRuntime::default());
    rt.fail_create
        .lock()
        .unwrap()
        .push(("j1".into(), "port is already allocated".into()));
    let a = agent(rt.clone());
    let mut failed = HashMap::new();
    let r = a
        .reconcile("cl", Some(&desired(JobState::Placed)), &mut failed)
        .await
        .unwrap();
    assert_eq!(r.failures[0].message, "docker: port is already allocated");
    a.reconcile("cl", Some(&desired(JobState::Placed)), &mut failed)
        .await
        .unwrap();
    assert_eq!(rt.calls(), vec!["create j1"]);
}

#[tokio::test]
async fn no_desired_state_means_no_action() {
    let rt = Arc::new(FakeRuntime::default());
    rt.containers
        .lock()
        .unwrap()
        .push(crate::runtime::ContainerInfo {
            id: "c9".into(),
            job_id: "old".into(),
            state: berth_proto::internal::v1::ContainerState::Running,
            ..Default::default()
        });
    let a = agent(rt.clone());
    let r = a.reconcile("cl", None, &mut HashMap::new()).await.unwrap();
    assert!(
        rt.calls().is_empty(),
        "an agent that has not heard from the controller must not stop anything"
    );
    assert_eq!(r.observed_revision, 0);
}

#[tokio::test]
async fn limits_follow_the_job_but_not_back_over_a_fresh_update() {
    let rt = Arc::new(FakeRuntime::default());
    let a = agent(rt.clone());
    let mut failed = HashMap::new();
    let mut want = desired(JobState::Running);
    want.allocations[0].spec.as_mut().unwrap().memory_bytes = 64 << 20;
    rt.containers
        .lock()
        .unwrap()
        .push(crate::runtime::ContainerInfo {
            id: "c1".into(),
            job_id: "j1".into(),
            state: berth_proto::internal::v1::ContainerState::Running,
            memory_bytes: 128 << 20,
            ..Default::default()
        });
    // `berth update` just raised it here; its commit has not arrived yet.
    a.updated_at
        .lock()
        .unwrap()
        .insert("c1".into(), std::time::Instant::now());
    a.reconcile("cl", Some(&want), &mut failed).await.unwrap();
    assert!(rt.calls().is_empty(), "{:?}", rt.calls());
    // Drift with no update in flight is put back.
    a.updated_at.lock().unwrap().clear();
    a.reconcile("cl", Some(&want), &mut failed).await.unwrap();
    assert_eq!(
        rt.calls(),
        vec![format!("update c1 memory={} cpus=0", 64 << 20)]
    );
}

#[tokio::test]
async fn a_zombie_container_is_stopped_and_its_gpu_reported_busy_meanwhile() {
    let rt = Arc::new(FakeRuntime::default());
    let a = agent(rt.clone());
    let uuid = a.gpus.sample().unwrap()[0].uuid.clone();
    rt.containers
        .lock()
        .unwrap()
        .push(crate::runtime::ContainerInfo {
            id: "zombie1".into(),
            job_id: "gone".into(),
            state: berth_proto::internal::v1::ContainerState::Running,
            gpus: vec![uuid.clone()],
            ..Default::default()
        });
    let none = DesiredAllocations::default();
    let report = a
        .reconcile("cl", Some(&none), &mut HashMap::new())
        .await
        .unwrap();
    // The stop runs off the loop.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(
        rt.calls().iter().any(|c| c == "stop zombie1"),
        "{:?}",
        rt.calls()
    );
    let busy = report.gpus.iter().find(|g| g.uuid == uuid).unwrap();
    assert!(
        busy.foreign_processes
            .iter()
            .any(|p| p.name.contains("zombie1")),
        "{busy:?}"
    );
    let other = report.gpus.iter().find(|g| g.uuid != uuid).unwrap();
    assert!(other.foreign_processes.is_empty());
}

#[tokio::test]
async fn a_fenced_job_is_reported_failed_until_its_controller_moves_on() {
    let rt = Arc::new(FakeRuntime::default());
    let a = agent(rt.clone());
    a.lease.fenced(
        "j1",
        "fenced: its host lost the controllers for 15 s".into(),
    );
    let mut failed = HashMap::new();
    let want = desired(JobState::Running);
    let report = a.reconcile("cl", Some(&want), &mut failed).await.unwrap();
    assert!(
        report
            .failures
            .iter()
            .any(|f| f.job_id == "j1" && f.message.starts_with("fenced")),
        "{:?}",
        report.failures
    );
    // Once the job is no longer placed here, it is forgotten.
    let mut failed = HashMap::new();
    let report = a
        .reconcile("cl", Some(&DesiredAllocations::default()), &mut failed)
        .await
        .unwrap();
    assert!(report.failures.is_empty());
    assert!(!a.lease.is_fenced("j1"));
}
