//! `berth.v1.UsageService`: the usage ledger's reports (`state::usage`),
//! with the runs going on now counted until now.

use std::sync::Arc;

use berth_proto::v1::usage_service_server::UsageService;
use berth_proto::v1::{GetUsageRequest, GetUsageResponse, UsageGroup, UsageRow};
use tonic::{Request, Response, Status};

use crate::core::{convert, Controller};
use crate::state::usage::{report, By, Totals};

pub struct UsageApi(pub Arc<Controller>);

#[tonic::async_trait]
impl UsageService for UsageApi {
    async fn get_usage(
        &self,
        req: Request<GetUsageRequest>,
    ) -> Result<Response<GetUsageResponse>, Status> {
        let req = req.into_inner();
        if req.since_ms < 0 || req.until_ms < 0 {
            return Err(Status::invalid_argument(
                "since and until are Unix milliseconds, 0 or more",
            ));
        }
        if req.until_ms > 0 && req.since_ms >= req.until_ms {
            return Err(Status::invalid_argument(format!(
                "the window is empty: since ({}) must come before until ({})",
                req.since_ms, req.until_ms
            )));
        }
        let by = match UsageGroup::try_from(req.group_by) {
            Ok(UsageGroup::Unspecified | UsageGroup::User) => By::User,
            Ok(UsageGroup::Day) => By::Day,
            Ok(UsageGroup::Node) => By::Node,
            Ok(UsageGroup::Model) => By::Model,
            Ok(UsageGroup::Job) => By::Job,
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "group_by {} is not one of user, day, node, model, job",
                    req.group_by
                )))
            }
        };
        self.0.read_barrier().await?;
        let now = convert::now_ms();
        let user = Some(req.user.as_str()).filter(|u| !u.is_empty());
        let (rows, detail_from_ms) = self.0.read(|s| {
            let live = s.live_runs(now);
            (
                report(&s.usage, &live, user, req.since_ms, req.until_ms, by),
                s.usage.detail_from_ms,
            )
        });
        Ok(Response::new(GetUsageResponse {
            rows: rows.into_iter().map(|r| row(r.key, &r.totals)).collect(),
            detail_from_ms,
            now_ms: now,
        }))
    }
}

fn row(key: String, t: &Totals) -> UsageRow {
    let s = |ms: u64| ms as f64 / 1000.0;
    UsageRow {
        key,
        runs: t.runs,
        gpu_seconds: s(t.gpu_ms),
        gpu_memory_gib_seconds: s(t.gpu_mib_ms) / 1024.0,
        cpu_seconds: s(t.cpu_ms),
        memory_gib_seconds: s(t.memory_mib_ms) / 1024.0,
        wall_seconds: s(t.wall_ms),
    }
}
