//! `Images` on Docker: the daemon's image store — listing, inspecting,
//! `docker save` / `docker load` streams, removal, the usage image GC
//! decides on — and the disk under its data root.

use std::collections::HashMap;

use berth_proto::v1::{DiskState, ImageInfo};
use bollard::query_parameters::{ListContainersOptionsBuilder, ListImagesOptionsBuilder};
use futures::stream::BoxStream;
use futures::StreamExt;

use super::docker::{docker_err, Docker};
use super::{Containers, ImageUsage, Images};
use crate::{Error, Result};

impl Docker {
    /// The image's EXPOSE ports, inspected once per image id (empty when
    /// the inspect fails: asked again next time).
    async fn exposed_ports(&self, id: &str) -> Vec<String> {
        if let Some(known) = self.exposed.lock().unwrap().get(id) {
            return known.clone();
        }
        let Ok(i) = self.client.inspect_image(id).await else {
            return Vec::new();
        };
        let mut ports: Vec<String> = i
            .config
            .and_then(|c| c.exposed_ports)
            .unwrap_or_default()
            .into_iter()
            .collect();
        ports.sort();
        self.exposed
            .lock()
            .unwrap()
            .insert(id.to_string(), ports.clone());
        ports
    }
}

#[async_trait::async_trait]
impl Images for Docker {
    async fn build_image(
        &self,
        spec: &super::BuildSpec,
        context: BoxStream<'static, std::result::Result<bytes::Bytes, std::io::Error>>,
        output: tokio::sync::mpsc::Sender<String>,
    ) -> Result<String> {
        let mut opts = bollard::query_parameters::BuildImageOptionsBuilder::default()
            .dockerfile(&spec.dockerfile)
            .t(&spec.tag)
            .buildargs(&spec.build_args)
            // Intermediate containers go, failed or not (docker build's
            // --force-rm): a failed RUN leaves nothing behind.
            .rm(true)
            .forcerm(true);
        if !spec.target.is_empty() {
            opts = opts.target(&spec.target);
        }
        let mut out =
            self.streams
                .build_image(opts.build(), None, Some(bollard::body_try_stream(context)));
        let mut id = String::new();
        while let Some(item) = out.next().await {
            let info = item.map_err(|e| Error::Docker(format!("docker build: {e}")))?;
            if let Some(text) = info.stream {
                let _ = output.send(text).await;
            }
            // A failed step arrives as a line inside the 200 answer.
            if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                return Err(Error::Docker(detail));
            }
            if let Some(img) = info.aux {
                id = img.id.unwrap_or_default();
            }
        }
        if id.is_empty() {
            // Older daemons say "Successfully built ID" only; ask the store.
            id = self
                .image(&spec.tag)
                .await?
                .map(|(id, _)| id)
                .ok_or_else(|| Error::Docker("docker build ended without an image".into()))?;
        }
        Ok(id)
    }

    async fn images(&self) -> Result<Vec<ImageInfo>> {
        let opts = ListImagesOptionsBuilder::default().all(false).build();
        let images = self
            .client
            .list_images(Some(opts))
            .await
            .map_err(docker_err)?;
        let mut out = Vec::with_capacity(images.len());
        for i in images {
            let exposed_ports = self.exposed_ports(&i.id).await;
            out.push(ImageInfo {
                tags: i
                    .repo_tags
                    .into_iter()
                    .filter(|t| t != "<none>:<none>")
                    .collect(),
                size_bytes: i.size.max(0) as u64,
                created_at: i.created,
                exposed_ports,
                id: i.id,
            });
        }
        Ok(out)
    }

    async fn image(&self, reference: &str) -> Result<Option<(String, u64)>> {
        match self.client.inspect_image(reference).await {
            Ok(i) => Ok(Some((
                i.id.unwrap_or_default(),
                i.size.unwrap_or(0).max(0) as u64,
            ))),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(docker_err(e)),
        }
    }

    fn export_image(&self, reference: &str) -> BoxStream<'static, Result<bytes::Bytes>> {
        self.streams
            .export_image(reference)
            .map(|r| r.map_err(docker_err))
            .boxed()
    }

    async fn import_image(
        &self,
        archive: BoxStream<'static, std::result::Result<bytes::Bytes, std::io::Error>>,
    ) -> Result<Vec<String>> {
        let opts = bollard::query_parameters::ImportImageOptionsBuilder::default()
            .quiet(true)
            .build();
        let mut out = self.streams.import_image_stream(opts, archive, None);
        let mut loaded = Vec::new();
        // The daemon answers 200 and reports a failed load inside the body:
        // an errorDetail line, or an "Error ..." message.
        while let Some(item) = out.next().await {
            let info = item.map_err(|e| Error::Docker(format!("docker load: {e}")))?;
            if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                return Err(Error::Docker(format!("docker load: {detail}")));
            }
            let msg = info.stream.unwrap_or_default();
            if msg.contains("Error") {
                return Err(Error::Docker(format!("docker load: {}", msg.trim())));
            }
            for line in msg.lines() {
                if let Some(name) = line
                    .strip_prefix("Loaded image ID: ")
                    .or_else(|| line.strip_prefix("Loaded image: "))
                {
                    loaded.push(name.trim().to_string());
                }
            }
        }
        Ok(loaded)
    }

    async fn image_layers(&self, reference: &str) -> Result<Vec<String>> {
        let i = self
            .client
            .inspect_image(reference)
            .await
            .map_err(docker_err)?;
        Ok(i.root_fs.and_then(|r| r.layers).unwrap_or_default())
    }

    async fn remove_image(&self, reference: &str, force: bool) -> Result<()> {
        let opts = bollard::query_parameters::RemoveImageOptionsBuilder::default()
            .force(force)
            .build();
        match self.client.remove_image(reference, Some(opts), None).await {
            Ok(_) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Err(Error::NotFound(format!(
                "no image {reference} on this host"
            ))),
            Err(bollard::errors::Error::DockerResponseServerError { message, .. }) => {
                Err(Error::Docker(message))
            }
            Err(e) => Err(docker_err(e)),
        }
    }

    async fn image_usage(&self) -> Result<Vec<ImageUsage>> {
        let opts = ListContainersOptionsBuilder::default().all(true).build();
        let containers = self
            .client
            .list_containers(Some(opts))
            .await
            .map_err(docker_err)?;
        let mut used: HashMap<String, (u32, i64)> = HashMap::new();
        for c in containers {
            let e = used.entry(c.image_id.unwrap_or_default()).or_default();
            e.0 += 1;
            e.1 = e.1.max(c.created.unwrap_or(0) * 1000);
        }
        let mut out = Vec::new();
        for image in self.images().await? {
            // When it arrived here: docker load and docker tag set it.
            let tagged = match self.client.inspect_image(&image.id).await {
                Ok(i) => i
                    .metadata
                    .and_then(|m| m.last_tag_time)
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                    .map_or(0, |t| t.timestamp_millis()),
                Err(_) => 0,
            };
            let (containers, last_container) = used.get(&image.id).copied().unwrap_or_default();
            out.push(ImageUsage {
                last_used_ms: tagged.max(last_container).max(image.created_at * 1000),
                containers,
                image,
            });
        }
        Ok(out)
    }

    async fn disk(&self) -> Result<DiskState> {
        let root = self
            .root_dir
            .get_or_try_init(|| async { self.info().await.map(|i| i.root_dir) })
            .await?
            .clone();
        let st = nix::sys::statvfs::statvfs(root.as_str())
            .map_err(|e| Error::Docker(format!("statvfs {root}: {e}")))?;
        let frag = st.fragment_size() as u64;
        // A test's full disk (only in a fault-injection build).
        let free = crate::faults::disk_free().unwrap_or(st.blocks_available() as u64 * frag);
        Ok(DiskState {
            docker_root_dir: root,
            total_bytes: st.blocks() as u64 * frag,
            free_bytes: free,
        })
    }
}
