//! An in-memory runtime (all three traits) that records every call, for unit tests of
//! the reconciler and agent loop. Never used by end-to-end tests.

use std::sync::Mutex;
use std::time::Duration;

use berth_proto::internal::v1::ContainerState;
use berth_proto::v1::{DiskState, ImageInfo};
use futures::stream::BoxStream;
use futures::StreamExt;

use super::{
    ContainerInfo, ContainerIo, ContainerSpec, Containers, DaemonInfo, Images, LogItem, LABEL_JOB,
};
use crate::{Error, Result};

#[derive(Default)]
pub struct FakeRuntime {
    pub containers: Mutex<Vec<ContainerInfo>>,
    pub calls: Mutex<Vec<String>>,
    /// Job ids whose create fails, with the message.
    pub fail_create: Mutex<Vec<(String, String)>>,
    /// Images this fake daemon holds: reference → (id, `docker save` bytes).
    pub images: Mutex<std::collections::HashMap<String, (String, Vec<u8>)>>,
    /// Archives `import_image` received in full, in order.
    pub loaded: Mutex<Vec<Vec<u8>>>,
    /// What a complete load registers: (reference, id), as a daemon would
    /// after reading the archive's manifest.
    pub load_as: Mutex<Option<(String, String)>>,
    /// Layer diff ids per image reference (for layer skipping).
    pub layers: Mutex<std::collections::HashMap<String, Vec<String>>>,
    next_id: Mutex<u32>,
}

impl FakeRuntime {
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }
}

#[async_trait::async_trait]
impl Containers for FakeRuntime {
    async fn info(&self) -> Result<DaemonInfo> {
        Ok(DaemonInfo {
            version: "fake".into(),
            root_dir: "/fake".into(),
            settings: Default::default(),
        })
    }

    async fn list(&self, _cluster: &str, _node: &str) -> Result<Vec<ContainerInfo>> {
        Ok(self.containers.lock().unwrap().clone())
    }

    async fn create_and_start(&self, spec: &ContainerSpec) -> Result<String> {
        let job = spec.labels.get(LABEL_JOB).cloned().unwrap_or_default();
        self.record(format!("create {job}"));
        if let Some((_, msg)) = self
            .fail_create
            .lock()
            .unwrap()
            .iter()
            .find(|(j, _)| *j == job)
        {
            return Err(Error::Docker(msg.clone()));
        }
        let mut n = self.next_id.lock().unwrap();
        *n += 1;
        let id = format!("c{n}");
        self.containers.lock().unwrap().push(ContainerInfo {
            id: id.clone(),
            job_id: job,
            state: ContainerState::Running,
            started_at_ms: 1,
            memory_bytes: spec.memory_bytes,
            nano_cpus: spec.nano_cpus,
            attempt: spec
                .labels
                .get(super::LABEL_ATTEMPT)
                .and_then(|a| a.parse().ok())
                .unwrap_or(0),
            keep_when_lost: spec.labels.contains_key(super::LABEL_KEEP_WHEN_LOST),
            auto_remove: spec.labels.contains_key(super::LABEL_AUTO_REMOVE),
            ..Default::default()
        });
        Ok(id)
    }

    async fn start(&self, id: &str) -> Result<()> {
        self.record(format!("start {id}"));
        for c in self
            .containers
            .lock()
            .unwrap()
            .iter_mut()
            .filter(|c| c.id == id)
        {
            c.state = ContainerState::Running;
        }
        Ok(())
    }

    async fn stop(&self, id: &str, _grace: Duration) -> Result<()> {
        self.record(format!("stop {id}"));
        for c in self
            .containers
            .lock()
            .unwrap()
            .iter_mut()
            .filter(|c| c.id == id)
        {
            c.state = ContainerState::Exited;
            c.exit_code = 143;
        }
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<()> {
        self.record(format!("rm {id}"));
        self.containers.lock().unwrap().retain(|c| c.id != id);
        Ok(())
    }

    async fn update_limits(&self, id: &str, memory_bytes: u64, nano_cpus: u64) -> Result<()> {
        self.record(format!(
            "update {id} memory={memory_bytes} cpus={nano_cpus}"
        ));
        let mut containers = self.containers.lock().unwrap();
        let c = containers
            .iter_mut()
            .find(|c| c.id == id)
            .ok_or_else(|| Error::NotFound(format!("no container {id}")))?;
        if memory_bytes > 0 {
            c.memory_bytes = memory_bytes;
        }
        if nano_cpus > 0 {
            c.nano_cpus = nano_cpus;
        }
        Ok(())
    }

    fn logs(&self, id: &str, _follow: bool, _tail: u32) -> BoxStream<'static, LogItem> {
        self.record(format!("logs {id}"));
        futures::stream::iter(vec![Ok((1, b"hello\n".to_vec()))]).boxed()
    }
}

#[async_trait::async_trait]
impl ContainerIo for FakeRuntime {
    async fn exec(&self, container: &str, spec: &super::ExecSpec) -> Result<super::ExecSession> {
        self.record(format!("exec {container} {}", spec.command.join(" ")));
        let said = bytes::Bytes::from(format!("ran {}\n", spec.command.join(" ")));
        Ok(super::ExecSession {
            id: "exec-1".into(),
            output: futures::stream::iter(vec![Ok((1, said))]).boxed(),
            input: Box::pin(tokio::io::sink()),
        })
    }

    async fn attach(&self, container: &str) -> Result<super::ExecSession> {
        self.record(format!("attach {container}"));
        Ok(super::ExecSession {
            id: container.into(),
            output: futures::stream::empty().boxed(),
            input: Box::pin(tokio::io::sink()),
        })
    }

    async fn resize_tty(&self, container: &str, rows: u32, cols: u32) -> Result<()> {
        self.record(format!("resize {container} {rows}x{cols}"));
        Ok(())
    }

    async fn exec_resize(&self, id: &str, rows: u32, cols: u32) -> Result<()> {
        self.record(format!("resize {id} {rows}x{cols}"));
        Ok(())
    }

    async fn exec_exit_code(&self, _id: &str) -> Result<Option<i64>> {
        Ok(Some(0))
    }

    async fn path_stat(&self, _container: &str, _path: &str) -> Result<Option<super::PathStat>> {
        Ok(None)
    }

    fn copy_from(&self, container: &str, path: &str) -> BoxStream<'static, Result<bytes::Bytes>> {
        self.record(format!("copy_from {container} {path}"));
        futures::stream::empty().boxed()
    }

    async fn copy_to(
        &self,
        container: &str,
        dir: &str,
        mut tar: BoxStream<'static, std::result::Result<bytes::Bytes, std::io::Error>>,
    ) -> Result<()> {
        self.record(format!("copy_to {container} {dir}"));
        while let Some(piece) = tar.next().await {
            piece.map_err(|e| Error::Docker(e.to_string()))?;
        }
        Ok(())
    }

    async fn commit(
        &self,
        container: &str,
        repo: &str,
        tag: &str,
        _comment: &str,
        pause: bool,
    ) -> Result<String> {
        self.record(format!("commit {container} {repo}:{tag} pause={pause}"));
        Ok("sha256:c0".into())
    }
}

#[async_trait::async_trait]
impl Images for FakeRuntime {
    async fn build_image(
        &self,
        spec: &super::BuildSpec,
        mut context: BoxStream<'static, std::result::Result<bytes::Bytes, std::io::Error>>,
        output: tokio::sync::mpsc::Sender<String>,
    ) -> Result<String> {
        let mut bytes = 0;
        while let Some(piece) = context.next().await {
            bytes += piece
                .map_err(|e| Error::Docker(format!("docker build: {e}")))?
                .len();
        }
        self.record(format!(
            "build {} from {} ({bytes} bytes)",
            spec.tag, spec.dockerfile
        ));
        let _ = output.send(format!("built {}\n", spec.tag)).await;
        Ok("sha256:b0".into())
    }

    async fn images(&self) -> Result<Vec<ImageInfo>> {
        Ok(vec![ImageInfo {
            exposed_ports: Vec::new(),
            id: "sha256:00".into(),
            tags: vec!["busybox:latest".into()],
            size_bytes: 1,
            created_at: 0,
        }])
    }

    async fn image(&self, reference: &str) -> Result<Option<(String, u64)>> {
        Ok(self
            .images
            .lock()
            .unwrap()
            .get(reference)
            .map(|(id, bytes)| (id.clone(), bytes.len() as u64)))
    }

    fn export_image(&self, reference: &str) -> BoxStream<'static, Result<bytes::Bytes>> {
        self.record(format!("export {reference}"));
        match self.images.lock().unwrap().get(reference) {
            // In odd-sized pieces, as a daemon's HTTP body arrives.
            Some((_, archive)) => futures::stream::iter(
                archive
                    .chunks(7777)
                    .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
                    .collect::<Vec<_>>(),
            )
            .boxed(),
            None => futures::stream::once(async move {
                Err(Error::NotFound(format!("no such image {}", "in the fake")))
            })
            .boxed(),
        }
    }

    async fn import_image(
        &self,
        mut archive: BoxStream<'static, std::result::Result<bytes::Bytes, std::io::Error>>,
    ) -> Result<Vec<String>> {
        let mut all = Vec::new();
        while let Some(piece) = archive.next().await {
            let piece = piece.map_err(|e| Error::Docker(format!("docker load: {e}")))?;
            all.extend_from_slice(&piece);
        }
        let mut loaded = Vec::new();
        if let Some((reference, id)) = self.load_as.lock().unwrap().clone() {
            self.images
                .lock()
                .unwrap()
                .insert(reference.clone(), (id, all.clone()));
            loaded.push(reference);
        }
        self.loaded.lock().unwrap().push(all);
        Ok(loaded)
    }

    async fn image_layers(&self, reference: &str) -> Result<Vec<String>> {
        Ok(self
            .layers
            .lock()
            .unwrap()
            .get(reference)
            .cloned()
            .unwrap_or_default())
    }

    async fn remove_image(&self, reference: &str, _force: bool) -> Result<()> {
        self.record(format!("rmi {reference}"));
        match self.images.lock().unwrap().remove(reference) {
            Some(_) => Ok(()),
            None => Err(Error::NotFound(format!(
                "no image {reference} on this host"
            ))),
        }
    }

    async fn image_usage(&self) -> Result<Vec<super::ImageUsage>> {
        let images = self.images.lock().unwrap();
        Ok(images
            .iter()
            .map(|(reference, (id, bytes))| super::ImageUsage {
                image: ImageInfo {
                    exposed_ports: Vec::new(),
                    id: id.clone(),
                    tags: vec![reference.clone()],
                    size_bytes: bytes.len() as u64,
                    created_at: 0,
                },
                ..Default::default()
            })
            .collect())
    }

    async fn disk(&self) -> Result<DiskState> {
        Ok(DiskState {
            docker_root_dir: "/fake".into(),
            total_bytes: 100,
            free_bytes: 50,
        })
    }
}
