//! `GET /api/v1/blocklist/sources`: who blocks what. Each source (`manual`, `rule:NAME`,
//! `feed:NAME`) with its blocks in force, and for a feed its last import (when, from
//! where, what it added, withdrew, kept and skipped).

use actix_web::{HttpResponse, get, web};
use chrono::Utc;
use iptrack_entity::query::sources::{self, Source};

use super::{AdminState, ApiError, ErrorBody, auth::Admin};

#[utoipa::path(
    operation_id = "list_blocklist_sources",
    tag = "blocked",
    responses(
        (status = 200, description = "Every source with a block in force or a recorded feed import, by name", body = Vec<Source>),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/blocklist/sources")]
pub(super) async fn list(_: Admin, state: web::Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let sources = sources::all(&state.db, Utc::now())
        .await
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(sources))
}
