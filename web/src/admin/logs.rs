//! `GET /api/v1/logs`: request-log rows, newest first, a page at a time.

use actix_web::{HttpResponse, get, web};
use iptrack_entity::query::logs::{self, Cursor, LogFilter, LogPage};
use serde::Deserialize;

use super::{AdminState, ApiError, ErrorBody, auth::Admin, params};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct LogQuery {
    /// Only this client address.
    ip: Option<String>,
    /// Only paths starting with this text, e.g. `/login`.
    path: Option<String>,
    /// Only this response status, e.g. 403.
    status: Option<String>,
    /// Rows at or after this time (RFC 3339).
    since: Option<String>,
    /// Rows before this time (RFC 3339).
    until: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Rows per page: 1 to 1000, default 100.
    limit: Option<String>,
}

#[utoipa::path(
    operation_id = "list_logs",
    tag = "logs",
    params(LogQuery),
    responses(
        (status = 200, description = "A page of rows, newest first", body = LogPage),
        (status = 400, description = "A parameter is invalid", body = ErrorBody),
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
        since: params::time("since", query.since.as_deref())?,
        until: params::time("until", query.until.as_deref())?,
    };
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
