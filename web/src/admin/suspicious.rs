//! `GET /api/v1/suspicious`: flagged addresses (by the hourly job or a streaming rule),
//! newest first.

use actix_web::{HttpResponse, get, web};
use iptrack_entity::{
    query::suspicious::{self, SuspiciousFilter},
    suspicious_ip,
};
use serde::Deserialize;

use super::{AdminState, ApiError, ErrorBody, auth::Admin, params, schema};

/// A rule's name: the hourly job's (`volume`, `sensitive-path`) or a streaming rule's
/// (`IPTRACK_DETECT_RULES` names are 1-64 of these characters).
const RULE_PATTERN: &str = "^[a-z0-9-]{1,64}$";

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct SuspiciousQuery {
    /// Only this address.
    #[param(schema_with = schema::ip_address)]
    ip: Option<String>,
    /// Only this rule: `volume`, `sensitive-path` (the hourly job) or a streaming rule's
    /// name (`GET /api/v1/rules`).
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

/// The document states the same pattern the handler checks.
fn rule_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .pattern(Some(RULE_PATTERN))
        .build()
}

/// Whether `rule` is what [`RULE_PATTERN`] describes.
fn is_rule_name(rule: &str) -> bool {
    (1..=64).contains(&rule.len())
        && rule
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
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
        && !is_rule_name(rule)
    {
        return Err(ApiError::BadRequest(
            "rule must be a rule name: 1-64 of a-z, 0-9 and -".to_owned(),
        ));
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
