//! `GET /api/v1/stats`: what the dashboard draws.

use actix_web::{HttpResponse, get, web};
use chrono::{Duration, Utc};
use iptrack_entity::query::stats::{self, MAX_RANGE, MAX_TOP, Stats};
use serde::Deserialize;

use super::{AdminState, ApiError, ErrorBody, auth::Admin, params, schema};

/// Range when the request names none: the last hour.
const DEFAULT_RANGE: Duration = Duration::hours(1);
const DEFAULT_TOP: u64 = 10;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct StatsQuery {
    /// Start of the range, rounded down to the minute; default an hour before `until`.
    /// Must be earlier than `until`, and at most 24 h before it.
    #[param(schema_with = schema::date_time)]
    since: Option<String>,
    /// End of the range (exclusive); default now.
    #[param(schema_with = schema::date_time)]
    until: Option<String>,
    /// Entries per top list.
    #[param(schema_with = top_schema)]
    top: Option<String>,
}

fn top_schema() -> utoipa::openapi::Object {
    schema::whole_number(1, MAX_TOP, Some(DEFAULT_TOP), false)
}

#[utoipa::path(
    operation_id = "get_stats",
    tag = "stats",
    params(StatsQuery),
    responses(
        (status = 200, description = "Figures for the range", body = Stats),
        (status = 400, description = "A parameter is invalid, `since` is not earlier than `until`, \
                                        or the range is longer than 24 h", body = ErrorBody),
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
    let since = params::time("since", query.since.as_deref())?;
    let until = params::time("until", query.until.as_deref())?.unwrap_or_else(Utc::now);
    let since = since.unwrap_or(until - DEFAULT_RANGE);
    params::ordered(Some(since), Some(until))?;
    if until - since > MAX_RANGE {
        return Err(ApiError::BadRequest(format!(
            "the range from since to until may be at most {} hours",
            MAX_RANGE.num_hours()
        )));
    }
    let top = params::count("top", query.top.as_deref(), DEFAULT_TOP, MAX_TOP)?;
    let figures = stats::stats(&state.db, since, until, top)
        .await
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(figures))
}
