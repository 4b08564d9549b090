//! `GET /api/v1/suspicious`: addresses the hourly job flagged, newest first.

use actix_web::{HttpResponse, get, web};
use iptrack_entity::{
    query::suspicious::{self, SuspiciousFilter},
    suspicious_ip,
};
use serde::Deserialize;

use super::{AdminState, ApiError, ErrorBody, auth::Admin, params};

/// The rules the flag job applies (see `iptrack_worker::jobs::flag_suspicious_ips`).
const RULES: [&str; 2] = ["volume", "sensitive-path"];

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct SuspiciousQuery {
    /// Only this address.
    ip: Option<String>,
    /// Only this rule: `volume` or `sensitive-path`.
    rule: Option<String>,
    /// Flags made at or after this time (RFC 3339).
    since: Option<String>,
    /// Flags made before this time (RFC 3339).
    until: Option<String>,
    /// How many: 1 to 1000, default 100.
    limit: Option<String>,
}

#[utoipa::path(
    operation_id = "list_suspicious",
    tag = "suspicious",
    params(SuspiciousQuery),
    responses(
        (status = 200, description = "Flags, newest first", body = Vec<suspicious_ip::Model>),
        (status = 400, description = "A parameter is invalid", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/suspicious")]
pub(super) async fn list(
    _: Admin,
    state: web::Data<AdminState>,
    query: web::Query<SuspiciousQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    if let Some(rule) = query.rule.as_deref()
        && !RULES.contains(&rule)
    {
        return Err(ApiError::BadRequest(format!(
            "rule must be one of {}",
            RULES.join(", ")
        )));
    }
    let filter = SuspiciousFilter {
        ip_address: params::address("ip", query.ip.as_deref())?,
        rule: query.rule,
        since: params::time("since", query.since.as_deref())?,
        until: params::time("until", query.until.as_deref())?,
    };
    params::ordered(filter.since, filter.until)?;
    let limit = params::count(
        "limit",
        query.limit.as_deref(),
        suspicious::DEFAULT_LIMIT,
        suspicious::MAX_LIMIT,
    )?;
    let flags = suspicious::recent(&state.db, &filter, limit)
        .await
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(flags))
}
