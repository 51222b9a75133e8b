//! Fleet jobs: list, inspect (per-tenant outcomes, which replica ran each), cancel, resume,
//! and follow as server-sent events (one `tenant` event per tenant finished, then one
//! `summary`). The lifecycle itself (leases, takeover, hand-off) is
//! [`crate::engine::jobs`]'s; these handlers only start, read and follow jobs.

use std::collections::HashSet;
use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{audit, page_limit, page_offset};
use crate::catalog::{JobFilter, JobRow, JobState, JobTenantRow, StartJobError};
use crate::domain::Role;
use crate::engine::jobs::JobEvent;
use crate::http::error::{ApiError, Problem};
use crate::http::extract::{ApiPath, ApiQuery};
use crate::http::{AppState, AuthUser};
use crate::jobs::{OutcomeStatus, TenantReport};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JobsQuery {
    /// Page size (1 to 500, default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u64>,
    /// Rows to skip.
    pub offset: Option<u64>,
    /// Only jobs in this state.
    pub state: Option<JobState>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobRow>,
    pub total: i64,
    pub limit: u64,
    pub offset: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobDetail {
    pub job: JobRow,
    /// Outcome of every tenant the job worked on (up-to-date tenants are only counted).
    pub tenants: Vec<JobTenantRow>,
}

async fn load(state: &AppState, id: Uuid) -> Result<JobRow, ApiError> {
    state
        .engine
        .job(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no job {id}")))
}

/// Jobs, newest first.
#[utoipa::path(
    get,
    path = "/migrations/jobs",
    tag = "jobs",
    security(("bearer" = [])),
    params(JobsQuery),
    responses(
        (status = 200, description = "A page of jobs", body = JobList),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    _user: AuthUser,
    ApiQuery(q): ApiQuery<JobsQuery>,
) -> Result<Json<JobList>, ApiError> {
    let limit = page_limit(q.limit)?;
    let offset = page_offset(q.offset)?;
    let (jobs, total) = state
        .engine
        .jobs(&JobFilter {
            state: q.state,
            limit,
            offset,
        })
        .await?;
    Ok(Json(JobList {
        jobs,
        total,
        limit,
        offset,
    }))
}

/// A job: state, counts and per-tenant outcomes.
#[utoipa::path(
    get,
    path = "/migrations/jobs/{id}",
    tag = "jobs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = JobDetail),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn show(
    State(state): State<AppState>,
    _user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<JobDetail>, ApiError> {
    let job = load(&state, id).await?;
    let tenants = state.engine.job_tenants(id).await?;
    Ok(Json(JobDetail { job, tenants }))
}

/// Stop a running job at the next tenant boundary (tenants in flight finish), whichever
/// replica runs it.
#[utoipa::path(
    post,
    path = "/migrations/jobs/{id}/cancel",
    tag = "jobs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 403, description = "Needs the operator role", body = Problem, content_type = "application/problem+json"),
        (status = 202, description = "Cancelling; the job ends as cancelled", body = JobRow),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job is not running", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<(StatusCode, Json<JobRow>), ApiError> {
    user.require(Role::Operator)?;
    let job = load(&state, id).await?;
    if job.state.is_finished() {
        return Err(ApiError::Conflict {
            detail: format!("job {id} is already {}", job.state.as_str()),
            job_id: Some(id),
        });
    }
    // The flag in the catalog reaches the replica running it (its heartbeat reads it, within
    // a fifth of the lease); this replica's own run is told at once.
    if !state.jobs.cancel(id).await? {
        return Err(ApiError::Conflict {
            detail: format!("job {id} is not running"),
            job_id: Some(id),
        });
    }
    let job = load(&state, id).await?;
    audit(
        &state,
        &user.email,
        "job.cancel",
        Some(&id.to_string()),
        "ok",
        None,
    )
    .await;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

/// Continue an interrupted job with the tenants it had not finished.
#[utoipa::path(
    post,
    path = "/migrations/jobs/{id}/resume",
    tag = "jobs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 403, description = "Needs the operator role", body = Problem, content_type = "application/problem+json"),
        (status = 202, description = "Resumed", body = JobRow),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job is not interrupted, or another fleet job is running", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn resume(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<(StatusCode, Json<JobRow>), ApiError> {
    user.require(Role::Operator)?;
    let job = load(&state, id).await?;
    match state.jobs.resume(id).await {
        Ok(Some(job)) => {
            audit(
                &state,
                &user.email,
                "job.resume",
                Some(&id.to_string()),
                "ok",
                None,
            )
            .await;
            Ok((StatusCode::ACCEPTED, Json(job)))
        }
        Ok(None) => Err(ApiError::Conflict {
            detail: format!(
                "job {id} is {}; only interrupted jobs can be resumed",
                job.state.as_str()
            ),
            job_id: Some(id),
        }),
        Err(StartJobError::AlreadyRunning(other)) => Err(ApiError::Conflict {
            detail: if other == id {
                format!("job {id} was already resumed and is running")
            } else {
                format!("fleet job {other} is running; resume this one after it")
            },
            job_id: Some(other),
        }),
        Err(StartJobError::Db(e)) => Err(e.into()),
    }
}

/// One event of `GET /migrations/jobs/{id}/events`, as OpenAPI 3.1 describes an event of a
/// `text/event-stream` (its `event` and `data` fields): a `tenant` event carries a
/// [`JobTenantRow`], the closing `summary` event the final [`JobRow`], both as JSON.
pub struct JobStreamEvent;

impl JobStreamEvent {
    fn variant(event: &str, data: &str) -> utoipa::openapi::schema::Object {
        use utoipa::openapi::Ref;
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "event",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some([event])),
            )
            .property(
                "data",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .content_media_type("application/json")
                    .content_schema(Some(Ref::from_schema_name(data))),
            )
            .required("event")
            .required("data")
            .build()
    }
}

impl utoipa::PartialSchema for JobStreamEvent {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::OneOfBuilder::new()
            .item(Self::variant("tenant", "JobTenantRow"))
            .item(Self::variant("summary", "JobRow"))
            .description(Some(
                "A `tenant` event per tenant finished (its outcome), then one `summary` event (the final job)",
            ))
            .into()
    }
}

impl ToSchema for JobStreamEvent {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        schemas.push((JobRow::name().into(), JobRow::schema()));
        <JobRow as ToSchema>::schemas(schemas);
        schemas.push((JobTenantRow::name().into(), JobTenantRow::schema()));
        <JobTenantRow as ToSchema>::schemas(schemas);
    }
}

fn tenant_event(t: &impl Serialize) -> Event {
    Event::default()
        .event("tenant")
        .json_data(t)
        .unwrap_or_else(|_| Event::default().event("tenant"))
}

/// A live outcome in the shape of a recorded one, so a `tenant` event reads the same whether
/// it was replayed from the catalog or heard live.
fn outcome_row(t: &TenantReport, owner: &str) -> JobTenantRow {
    JobTenantRow {
        schema_name: t.schema.clone(),
        status: t.status.as_str().to_owned(),
        from_version: t.from,
        to_version: t.to,
        duration_ms: t.duration_ms,
        attempts: i64::from(t.attempts),
        error: t.error.clone(),
        finished_at: chrono::Utc::now(),
        owner: Some(owner.to_owned()),
    }
}

fn summary_event(job: &JobRow) -> Event {
    Event::default()
        .event("summary")
        .json_data(job)
        .unwrap_or_else(|_| Event::default().event("summary"))
}

/// Follow a job: a `tenant` event per tenant finished (outcomes recorded before you
/// connected come first), then a `summary` event with the final job, then the stream ends.
/// A replica that shuts down ends its streams without a summary (the job is handed off to
/// another replica): follow it again there.
#[utoipa::path(
    get,
    path = "/migrations/jobs/{id}/events",
    tag = "jobs",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "text/event-stream of `tenant` and `summary` events", content_type = "text/event-stream", body = JobStreamEvent),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn events(
    State(state): State<AppState>,
    _user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    // Subscribe before reading what is recorded, so nothing falls between the two.
    let live = state.jobs.subscribe(id);
    load(&state, id).await?;
    let (tx, rx) = mpsc::channel::<Event>(64);
    tokio::spawn(follow(state, id, live, tx));
    let stream = futures_util::StreamExt::map(ReceiverStream::new(rx), Ok);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

async fn follow(
    state: AppState,
    id: Uuid,
    live: Option<broadcast::Receiver<JobEvent>>,
    tx: mpsc::Sender<Event>,
) {
    let engine = state.engine.clone();
    let mut sent: HashSet<String> = HashSet::new();
    let replay = |rows: Vec<JobTenantRow>, sent: &mut HashSet<String>| -> Vec<Event> {
        rows.into_iter()
            .filter(|r| sent.insert(r.schema_name.clone()))
            .map(|r| tenant_event(&r))
            .collect()
    };
    let Ok(rows) = engine.job_tenants(id).await else {
        return;
    };
    for e in replay(rows, &mut sent) {
        if tx.send(e).await.is_err() {
            return;
        }
    }
    if let Some(mut live) = live {
        loop {
            match live.recv().await {
                // Tenants a cancel or a failure left alone did not finish: the summary counts them.
                Ok(JobEvent::Tenant(t)) if t.status == OutcomeStatus::NotAttempted => {}
                Ok(JobEvent::Tenant(t)) => {
                    if sent.insert(t.schema.clone())
                        && tx
                            .send(tenant_event(&outcome_row(&t, state.jobs.owner())))
                            .await
                            .is_err()
                    {
                        return;
                    }
                }
                Ok(JobEvent::Summary(job)) => {
                    // Outcomes recorded without a live event (a dry run's plan) come first.
                    if let Ok(rows) = engine.job_tenants(id).await {
                        for e in replay(rows, &mut sent) {
                            if tx.send(e).await.is_err() {
                                return;
                            }
                        }
                    }
                    let _ = tx.send(summary_event(&job)).await;
                    return;
                }
                // Too slow a reader: catch up from the catalog and go on.
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if let Ok(rows) = engine.job_tenants(id).await {
                        for e in replay(rows, &mut sent) {
                            if tx.send(e).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    }
    // Finished already, or running in another instance: poll the catalog until it ends.
    loop {
        let Ok(Some(job)) = engine.job(id).await else {
            return;
        };
        if let Ok(rows) = engine.job_tenants(id).await {
            for e in replay(rows, &mut sent) {
                if tx.send(e).await.is_err() {
                    return;
                }
            }
        }
        if job.state.is_finished() {
            let _ = tx.send(summary_event(&job)).await;
            return;
        }
        // A job of another instance does not end with this one: let the server stop.
        if state.jobs.is_shutting_down() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tx.closed() => return,
        }
    }
}
