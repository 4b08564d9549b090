//! `GET /api/v1/countries`: requests, refusals and flagged addresses per country.

use actix_web::{HttpResponse, get, web};
use chrono::Duration;
use iptrack_entity::query::countries::{self, Countries};
use serde::Deserialize;

use super::{AdminState, ApiError, ErrorBody, auth::Admin, params, schema};

/// Range when the request names none: the last 24 hours.
const DEFAULT_RANGE: Duration = Duration::hours(24);

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct CountriesQuery {
    /// Start of the range; default 24 h before `until`. Must be earlier than `until`, and
    /// at most 90 days before it.
    #[param(schema_with = schema::date_time)]
    since: Option<String>,
    /// End of the range (exclusive); default now.
    #[param(schema_with = schema::date_time)]
    until: Option<String>,
}

#[utoipa::path(
    operation_id = "list_countries",
    tag = "countries",
    params(CountriesQuery),
    responses(
        (status = 200, description = "Located requests per country, most first, and the count of \
                                        requests not located", body = Countries),
        (status = 400, description = "A parameter is invalid, `since` is not earlier than `until`, \
                                        or the range is longer than 90 days", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/countries")]
pub(super) async fn list(
    _: Admin,
    state: web::Data<AdminState>,
    query: web::Query<CountriesQuery>,
) -> Result<HttpResponse, ApiError> {
    let (since, until) = params::range(
        query.since.as_deref(),
        query.until.as_deref(),
        DEFAULT_RANGE,
    )?;
    let figures = countries::countries(&state.db, since, until)
        .await
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(figures))
}
