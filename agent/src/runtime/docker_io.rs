//! `ContainerIo` on Docker: the container verbs users reach through the
//! controller — exec and attach (with their terminals), cp (stat, from,
//! to) and commit.

use bollard::query_parameters::{
    CommitContainerOptions, ContainerArchiveInfoOptions, DownloadFromContainerOptions,
    ResizeExecOptions, UploadToContainerOptions,
};
use futures::stream::BoxStream;
use futures::StreamExt;

use super::docker::{docker_err, Docker};
use super::{ContainerIo, ExecSession, ExecSpec, PathStat};
use crate::{Error, Result};

#[async_trait::async_trait]
impl ContainerIo for Docker {
    async fn attach(&self, container: &str) -> Result<ExecSession> {
        let opts = bollard::query_parameters::AttachContainerOptions {
            stdin: true,
            stdout: true,
            stderr: true,
            stream: true,
            logs: true,
            ..Default::default()
        };
        let attached = self
            .streams
            .attach_container(container, Some(opts))
            .await
            .map_err(docker_err)?;
        Ok(ExecSession {
            id: container.to_string(),
            output: split_output(attached.output),
            input: attached.input,
        })
    }

    async fn resize_tty(&self, container: &str, rows: u32, cols: u32) -> Result<()> {
        let opts = bollard::query_parameters::ResizeContainerTTYOptions {
            h: rows as i32,
            w: cols as i32,
        };
        self.client
            .resize_container_tty(container, opts)
            .await
            .map_err(docker_err)
    }

    async fn exec(&self, container: &str, spec: &ExecSpec) -> Result<ExecSession> {
        let non_empty = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let config = bollard::models::ExecConfig {
            attach_stdin: Some(spec.stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(spec.tty),
            env: (!spec.env.is_empty()).then(|| spec.env.clone()),
            cmd: Some(spec.command.clone()),
            user: non_empty(&spec.user),
            working_dir: non_empty(&spec.workdir),
            ..Default::default()
        };
        // An interactive session may last hours: the long-timeout client.
        let id = self
            .streams
            .create_exec(container, config)
            .await
            .map_err(docker_err)?
            .id;
        let started = self
            .streams
            .start_exec(
                &id,
                Some(bollard::exec::StartExecOptions {
                    detach: false,
                    tty: spec.tty,
                    output_capacity: None,
                }),
            )
            .await
            .map_err(docker_err)?;
        let bollard::exec::StartExecResults::Attached { output, input } = started else {
            return Err(Error::Docker("docker exec started detached".into()));
        };
        if spec.tty && spec.rows > 0 && spec.cols > 0 {
            // Before the first prompt is drawn, best effort.
            let _ = self.exec_resize(&id, spec.rows, spec.cols).await;
        }
        let output = output
            .map(|item| {
                use bollard::container::LogOutput;
                match item.map_err(docker_err)? {
                    LogOutput::StdErr { message } => Ok((2, message)),
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        Ok((1, message))
                    }
                    LogOutput::StdIn { message } => Ok((1, message)),
                }
            })
            .boxed();
        Ok(ExecSession { id, output, input })
    }

    async fn exec_resize(&self, id: &str, rows: u32, cols: u32) -> Result<()> {
        let opts = ResizeExecOptions {
            h: rows as i32,
            w: cols as i32,
        };
        self.client.resize_exec(id, opts).await.map_err(docker_err)
    }

    async fn exec_exit_code(&self, id: &str) -> Result<Option<i64>> {
        let i = self.client.inspect_exec(id).await.map_err(docker_err)?;
        Ok(if i.running == Some(true) {
            None
        } else {
            i.exit_code
        })
    }

    async fn path_stat(&self, container: &str, path: &str) -> Result<Option<PathStat>> {
        let opts = ContainerArchiveInfoOptions {
            path: path.to_string(),
        };
        match self
            .client
            .get_container_archive_info(container, Some(opts))
            .await
        {
            Ok(s) => Ok(Some(PathStat {
                name: s.name,
                size: s.size,
                // Go's os.ModeDir.
                is_dir: s.file_mode & (1 << 31) != 0,
            })),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(docker_err(e)),
        }
    }

    fn copy_from(&self, container: &str, path: &str) -> BoxStream<'static, Result<bytes::Bytes>> {
        let opts = DownloadFromContainerOptions {
            path: path.to_string(),
        };
        self.streams
            .download_from_container(container, Some(opts))
            .map(|r| r.map_err(docker_err))
            .boxed()
    }

    async fn copy_to(
        &self,
        container: &str,
        dir: &str,
        tar: BoxStream<'static, std::result::Result<bytes::Bytes, std::io::Error>>,
    ) -> Result<()> {
        let opts = UploadToContainerOptions {
            path: dir.to_string(),
            ..Default::default()
        };
        self.streams
            .upload_to_container(container, Some(opts), bollard::body_try_stream(tar))
            .await
            .map_err(docker_err)
    }

    async fn commit(
        &self,
        container: &str,
        repo: &str,
        tag: &str,
        comment: &str,
        pause: bool,
    ) -> Result<String> {
        let opts = CommitContainerOptions {
            container: Some(container.to_string()),
            repo: Some(repo.to_string()),
            tag: Some(tag.to_string()),
            comment: (!comment.is_empty()).then(|| comment.to_string()),
            pause,
            ..Default::default()
        };
        let r = self
            .streams
            .commit_container(opts, bollard::models::ContainerConfig::default())
            .await
            .map_err(docker_err)?;
        Ok(r.id)
    }
}

/// Docker's multiplexed output as (1 stdout | 2 stderr, bytes).
fn split_output(
    output: std::pin::Pin<
        Box<
            dyn futures::Stream<
                    Item = std::result::Result<
                        bollard::container::LogOutput,
                        bollard::errors::Error,
                    >,
                > + Send,
        >,
    >,
) -> BoxStream<'static, Result<(i32, bytes::Bytes)>> {
    output
        .map(|item| {
            use bollard::container::LogOutput;
            match item.map_err(docker_err)? {
                LogOutput::StdErr { message } => Ok((2, message)),
                LogOutput::StdOut { message }
                | LogOutput::Console { message }
                | LogOutput::StdIn { message } => Ok((1, message)),
            }
        })
        .boxed()
}
