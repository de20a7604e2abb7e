//! One job's page: what `berth inspect` says of it that a viewer may see,
//! and the tail of its logs for its owner and admins (as `berth logs`).

use std::fmt::Write as _;
use std::sync::Arc;

use berth_proto::v1::JobLogsRequest;
use berth_proto::web::Viewer;
use futures::StreamExt;

use super::html::esc;
use crate::api::auth::{Identity, Role};
use crate::core::Controller;

/// Lines of logs shown.
const TAIL: u32 = 100;

pub async fn live(ctl: &Arc<Controller>, viewer: &Viewer, id: &str) -> String {
    let job = match ctl.resolve(id) {
        Ok(j) => j,
        Err(e) => return format!("<p class=\"error\">{}</p>", esc(&e.to_string())),
    };
    let mut out = format!(
        "<section><h2>{} <small>{}</small></h2><table class=\"facts\">",
        esc(&job.name),
        esc(&job.id)
    );
    let rows = [
        ("user", job.spec.user.clone()),
        ("state", job.state.word().to_string()),
        ("image", job.spec.image.clone()),
        ("host", job.node.clone().unwrap_or_default()),
        (
            "GPUs",
            job.gpus
                .iter()
                .map(|g| g.index.to_string())
                .collect::<Vec<_>>()
                .join(","),
        ),
        (
            "exit code",
            job.exit_code.map(|c| c.to_string()).unwrap_or_default(),
        ),
        ("restarts", job.restarts.to_string()),
        ("message", job.message.clone()),
    ];
    for (k, v) in rows {
        let _ = write!(out, "<tr><th>{k}</th><td>{}</td></tr>", esc(&v));
    }
    out += "</table></section>";
    out + &logs(ctl, viewer, &job.id).await
}

/// The logs' tail, read from the job's agent with the viewer's own rights.
async fn logs(ctl: &Arc<Controller>, viewer: &Viewer, id: &str) -> String {
    let who = Identity::User {
        name: viewer.name.clone(),
        role: Role::parse(&viewer.role).unwrap_or(Role::Viewer),
    };
    let head = format!("<section><h2>Logs <small>last {TAIL} lines</small></h2>");
    let req = JobLogsRequest {
        job: id.to_string(),
        follow: false,
        tail: TAIL,
    };
    let stream = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        crate::api::jobs::logs::job_logs(ctl.clone(), &who, req),
    )
    .await;
    let mut stream = match stream {
        Ok(Ok(s)) => s,
        Ok(Err(status)) => {
            return format!(
                "{head}<p class=\"note\">{}</p></section>",
                esc(status.message())
            )
        }
        Err(_) => {
            return format!("{head}<p class=\"note\">its host did not answer in 5 s</p></section>")
        }
    };
    let mut text = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => text.extend_from_slice(&c.data),
                Err(_) => break,
            }
        }
    })
    .await;
    let note = if read.is_err() {
        "<p class=\"note\">cut short: its host was slow</p>"
    } else {
        ""
    };
    format!(
        "{head}<pre class=\"logs\">{}</pre>{note}</section>",
        esc(&String::from_utf8_lossy(&text))
    )
}
