//! `GET /api/v1/stats`: what the dashboard's overview draws.

use actix_web::{HttpResponse, get, web};
use chrono::Duration;
use iptrack_entity::query::{
    stats::{self, MAX_TOP, Stats},
    timeline::BucketSize,
};
use serde::Deserialize;

use super::{AdminState, ApiError, ErrorBody, auth::Admin, params, schema};

/// Range when the request names none: the last hour.
const DEFAULT_RANGE: Duration = Duration::hours(1);
const DEFAULT_TOP: u64 = 10;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct StatsQuery {
    /// Start of the range, rounded down to the bucket; default an hour before `until`.
    /// Must be earlier than `until`, and at most 90 days before it.
    #[param(schema_with = schema::date_time)]
    since: Option<String>,
    /// End of the range (exclusive); default now.
    #[param(schema_with = schema::date_time)]
    until: Option<String>,
    /// Entries per top list.
    #[param(schema_with = top_schema)]
    top: Option<String>,
    /// Length of the chart's buckets. Default: `minute` for ranges up to 24 h, `hour` up
    /// to 14 days, `day` beyond. A range may have at most 1,500 buckets.
    #[param(schema_with = bucket_schema)]
    bucket: Option<String>,
}

pub(super) fn top_schema() -> utoipa::openapi::Object {
    schema::whole_number(1, MAX_TOP, Some(DEFAULT_TOP), false)
}

pub(super) fn bucket_schema() -> utoipa::openapi::Object {
    let names: Vec<&str> = BucketSize::ALL.iter().map(|b| b.name()).collect();
    schema::one_of(&names, None)
}

#[utoipa::path(
    operation_id = "get_stats",
    tag = "stats",
    params(StatsQuery),
    responses(
        (status = 200, description = "Figures for the range", body = Stats),
        (status = 400, description = "A parameter is invalid, `since` is not earlier than `until`, \
                                        the range is longer than 90 days, or it would have more \
                                        than 1,500 buckets", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/stats")]
pub(super) async fn show(
    _: Admin,
    state: web::Data<AdminState>,
    query: web::Query<StatsQuery>,
) -> Result<HttpResponse, ApiError> {
    let timeline = params::timeline(
        query.since.as_deref(),
        query.until.as_deref(),
        query.bucket.as_deref(),
        DEFAULT_RANGE,
    )?;
    let top = params::count("top", query.top.as_deref(), DEFAULT_TOP, MAX_TOP)?;
    let figures = stats::stats(&state.db, &timeline, top)
        .await
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(figures))
}
