//! The admin JSON API under `/api/v1/`, for people and scripts that manage iptrack.
//!
//! Off unless `IPTRACK_ADMIN_TOKEN` is set; every request then needs
//! `Authorization: Bearer <token>`. Bad input gets 400 with a message, a body over 16 KiB
//! gets 413, and nothing a client sends can produce a 500 with details: server faults are
//! logged once here and answered opaquely.

mod auth;
mod blocked;
mod error;

use actix_web::web;
use redis::aio::ConnectionManager;
use sea_orm::DatabaseConnection;

pub use auth::AdminToken;
pub use error::ApiError;

/// Largest JSON body the API reads.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// What the admin handlers share.
#[derive(Debug, Clone)]
pub struct AdminState {
    pub db: DatabaseConnection,
    pub redis: ConnectionManager,
    pub redis_prefix: String,
}

/// Mounts the API's routes (the caller decides whether the API is on).
pub fn configure(cfg: &mut web::ServiceConfig) {
    let json = web::JsonConfig::default()
        .limit(MAX_BODY_BYTES)
        .error_handler(|error, _| ApiError::from_json_error(error).into());
    let query = web::QueryConfig::default()
        .error_handler(|error, _| ApiError::BadRequest(error.to_string()).into());
    cfg.service(
        web::scope("/api/v1")
            .app_data(json)
            .app_data(query)
            .service(blocked::list)
            .service(blocked::add)
            .service(blocked::remove),
    );
}
