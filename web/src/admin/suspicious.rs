//! `GET /api/v1/suspicious`: addresses the hourly job flagged, newest first.

use actix_web::{HttpResponse, get, web};
use iptrack_entity::{
    query::suspicious::{self, SuspiciousFilter},
    suspicious_ip,
};
use serde::Deserialize;

use super::{AdminState, ApiError, ErrorBody, auth::Admin, params, schema};

/// The rules the flag job applies (see `iptrack_worker::jobs::flag_suspicious_ips`).
const RULES: [&str; 2] = ["volume", "sensitive-path"];

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct SuspiciousQuery {
    /// Only this address.
    #[param(schema_with = schema::ip_address)]
    ip: Option<String>,
    /// Only this rule.
    #[param(schema_with = rule_schema)]
    rule: Option<String>,
    /// Flags made at or after this time. When `until` is given too, it must be earlier.
    #[param(schema_with = schema::date_time)]
    since: Option<String>,
    /// Flags made before this time.
    #[param(schema_with = schema::date_time)]
    until: Option<String>,
    /// How many.
    #[param(schema_with = limit_schema)]
    limit: Option<String>,
}

/// The document lists the same rules the handler checks against.
fn rule_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(RULES))
        .build()
}

fn limit_schema() -> utoipa::openapi::Object {
    schema::whole_number(
        1,
        suspicious::MAX_LIMIT,
        Some(suspicious::DEFAULT_LIMIT),
        false,
    )
}

#[utoipa::path(
    operation_id = "list_suspicious",
    tag = "suspicious",
    params(SuspiciousQuery),
    responses(
        (status = 200, description = "Flags, newest first", body = Vec<suspicious_ip::Model>),
        (status = 400, description = "A parameter is invalid, or `since` is not earlier than `until`", body = ErrorBody),
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
