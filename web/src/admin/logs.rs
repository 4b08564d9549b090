//! `GET /api/v1/logs`: request-log rows, newest first, a page at a time.

use actix_web::{HttpResponse, get, web};
use iptrack_entity::query::{
    logs::{self, Cursor, LogFilter, LogPage},
    status_class::StatusClass,
};
use serde::Deserialize;

use super::{AdminState, ApiError, ErrorBody, auth::Admin, params, schema};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct LogQuery {
    /// Only this client address. Not together with `network`.
    #[param(schema_with = schema::ip_address)]
    ip: Option<String>,
    /// Only addresses in this network (`203.0.113.0/24`, `2001:db8::/32`; host bits zero).
    /// Not together with `ip`.
    #[param(schema_with = schema::network)]
    network: Option<String>,
    /// Only paths starting with this text, e.g. `/login`.
    #[param(schema_with = schema::storable_text)]
    path: Option<String>,
    /// Only this HTTP method (any case; compared upper-case).
    #[param(schema_with = schema::method)]
    method: Option<String>,
    /// Only this response status, e.g. 403.
    #[param(schema_with = status_schema)]
    status: Option<String>,
    /// Only this status class: `2xx`, `3xx`, `4xx` (other than 403 and 429), `403`, `429`,
    /// `5xx`, or `other`.
    #[param(schema_with = class_schema)]
    class: Option<String>,
    /// Only requests from this country (ISO 3166-1 alpha-2, any case), or `unknown` for
    /// requests with no country.
    #[param(schema_with = schema::country)]
    country: Option<String>,
    /// Rows at or after this time. When `until` is given too, it must be earlier.
    #[param(schema_with = schema::date_time)]
    since: Option<String>,
    /// Rows before this time.
    #[param(schema_with = schema::date_time)]
    until: Option<String>,
    /// The `next_cursor` of the previous page, unchanged (any other value is refused).
    #[param(schema_with = cursor_schema)]
    cursor: Option<String>,
    /// Rows per page.
    #[param(schema_with = limit_schema)]
    limit: Option<String>,
}

fn status_schema() -> utoipa::openapi::Object {
    schema::whole_number(100, 599, None, false)
}

fn class_schema() -> utoipa::openapi::Object {
    let names: Vec<&str> = StatusClass::ALL.iter().map(|c| c.name()).collect();
    schema::one_of(&names, None)
}

fn limit_schema() -> utoipa::openapi::Object {
    schema::whole_number(1, logs::MAX_PAGE_SIZE, Some(logs::DEFAULT_PAGE_SIZE), false)
}

/// What a cursor looks like (see `Cursor::encode`); only one the server issued is valid.
fn cursor_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .pattern(Some("^(?:[0-9a-f]{2}){1,40}$"))
        .build()
}

#[utoipa::path(
    operation_id = "list_logs",
    tag = "logs",
    params(LogQuery),
    responses(
        (status = 200, description = "A page of rows, newest first. A filtered page examines at \
                                        most 20,000 rows: it may hold fewer than `limit` rows and \
                                        still have a `next_cursor`", body = LogPage),
        (status = 400, description = "A parameter is invalid, `since` is not earlier than `until`, \
                                        `ip` and `network` are both given, `network` has host bits \
                                        set, or `cursor` is not one the server issued", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/logs")]
pub(super) async fn list(
    _: Admin,
    state: web::Data<AdminState>,
    query: web::Query<LogQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let filter = LogFilter {
        ip_address: params::address("ip", query.ip.as_deref())?,
        path_prefix: params::text("path", query.path)?.filter(|p| !p.is_empty()),
        status: params::status("status", query.status.as_deref())?,
        network: params::network("network", query.network.as_deref())?,
        method: params::method("method", query.method.as_deref())?,
        class: params::class("class", query.class.as_deref())?,
        country: params::country("country", query.country.as_deref())?,
        since: params::time("since", query.since.as_deref())?,
        until: params::time("until", query.until.as_deref())?,
    };
    if filter.ip_address.is_some() && filter.network.is_some() {
        return Err(ApiError::BadRequest(
            "give ip or network, not both".to_owned(),
        ));
    }
    params::ordered(filter.since, filter.until)?;
    let cursor = query
        .cursor
        .as_deref()
        .map(Cursor::decode)
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let limit = params::count(
        "limit",
        query.limit.as_deref(),
        logs::DEFAULT_PAGE_SIZE,
        logs::MAX_PAGE_SIZE,
    )?;
    let page = logs::page(&state.db, &filter, cursor, limit)
        .await
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(page))
}
