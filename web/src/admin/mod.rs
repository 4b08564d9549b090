//! The admin JSON API under `/api/v1/`, for people and scripts that manage iptrack, and
//! the dashboard (`/dashboard`) that uses it.
//!
//! Off unless `IPTRACK_ADMIN_TOKEN` is set; every request then needs
//! `Authorization: Bearer <token>` (the OpenAPI document at `/api/v1/openapi.json` and the
//! dashboard's own files excepted: they hold no data). Bad input gets 400 with a message,
//! a body over 16 KiB gets 413, a method a path does not declare gets 405 with `Allow`,
//! and nothing a client sends can produce a 500 with details: server faults are logged
//! once here and answered opaquely. The document states what each parameter accepts
//! (patterns, formats, enums, bounds), and the handlers hold to it (`schema.rs`).

/// Every API route, registered through utoipa-actix-web so the same expression yields
/// the routes and the OpenAPI paths (see `openapi.rs`). Add new handlers here only.
macro_rules! api_scope {
    () => {
        utoipa_actix_web::scope("/api/v1")
            .service($crate::admin::blocked::list)
            .service($crate::admin::blocked::add)
            .service($crate::admin::blocked::remove)
            .service($crate::admin::sources::list)
            .service($crate::admin::suspicious::list)
            .service($crate::admin::logs::list)
            .service($crate::admin::stats::show)
            .service($crate::admin::addresses::show)
            .service($crate::admin::countries::list)
            .service($crate::admin::meta::show)
            .service($crate::admin::rules::list)
            .service($crate::admin::events::open)
    };
}

mod addresses;
mod auth;
mod blocked;
mod countries;
mod error;
mod events;
mod logs;
mod meta;
mod openapi;
mod params;
mod rules;
mod schema;
mod sources;
mod stats;
mod suspicious;

use actix_web::web;
use iptrack_core::blocklist::service::BlocklistService;
use sea_orm::DatabaseConnection;

pub use auth::AdminToken;
pub use error::ApiError;
pub use openapi::ErrorBody;

/// Largest JSON body the API reads.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// What the admin handlers share.
#[derive(Debug, Clone)]
pub struct AdminState {
    pub db: DatabaseConnection,
    /// Every block and unblock goes through it (validation, write, change notice).
    pub blocklist: BlocklistService,
    /// Whether the workers' geolocation data is DB-IP's, whose licence (CC BY 4.0) asks
    /// for the line "IP Geolocation by DB-IP" wherever its data is shown: `/api/v1/meta`
    /// then returns it and the dashboard displays it.
    pub geo_attribution: GeoAttribution,
    /// The streaming rules and ban escalation, listed by `/api/v1/rules`.
    pub detect: std::sync::Arc<iptrack_core::settings::DetectSettings>,
    /// Blocklist changes and notices relayed to `/api/v1/events`.
    pub live: crate::live::LiveEvents,
}

/// What the workers published about their geolocation data
/// (`iptrack_core::geo_attribution`), read when the dashboard asks.
#[derive(Clone)]
pub struct GeoAttribution {
    conn: redis::aio::ConnectionManager,
    prefix: String,
    /// The last answer Redis gave, kept for when it is away.
    last: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Likewise for whether the workers geolocate: 0 unknown, 1 on, 2 off.
    last_geolocation: std::sync::Arc<std::sync::atomic::AtomicU8>,
}

impl std::fmt::Debug for GeoAttribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoAttribution")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl GeoAttribution {
    pub fn new(conn: redis::aio::ConnectionManager, prefix: &str) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
            last: Default::default(),
            last_geolocation: Default::default(),
        }
    }

    /// Whether the workers geolocate; while Redis is away, the last answer it gave.
    pub async fn geolocation(&self) -> iptrack_core::geo_attribution::Geolocation {
        use iptrack_core::geo_attribution::{self, Geolocation};
        use std::sync::atomic::Ordering;
        match geo_attribution::geolocation(&mut self.conn.clone(), &self.prefix).await {
            Ok(state) => {
                let code = match state {
                    Geolocation::Unknown => 0,
                    Geolocation::On => 1,
                    Geolocation::Off => 2,
                };
                self.last_geolocation.store(code, Ordering::Relaxed);
                state
            }
            Err(error) => {
                iptrack_core::redis_status::report("geolocation state", &error);
                match self.last_geolocation.load(Ordering::Relaxed) {
                    1 => Geolocation::On,
                    2 => Geolocation::Off,
                    _ => Geolocation::Unknown,
                }
            }
        }
    }

    /// Whether DB-IP's credit is due; while Redis is away, the last answer it gave.
    pub async fn requires_dbip(&self) -> bool {
        use std::sync::atomic::Ordering;
        match iptrack_core::geo_attribution::requires_dbip(&mut self.conn.clone(), &self.prefix)
            .await
        {
            Ok(dbip) => {
                self.last.store(dbip, Ordering::Relaxed);
                dbip
            }
            Err(error) => {
                iptrack_core::redis_status::report("geolocation attribution", &error);
                self.last.load(Ordering::Relaxed)
            }
        }
    }
}

/// Mounts the API's routes and the dashboard (the caller decides whether they are on).
pub fn configure(cfg: &mut web::ServiceConfig) {
    let json = web::JsonConfig::default()
        .limit(MAX_BODY_BYTES)
        .error_handler(|error, _| ApiError::from_json_error(error).into());
    let query = web::QueryConfig::default()
        .error_handler(|error, _| ApiError::BadRequest(error.to_string()).into());
    cfg.service(
        api_scope!()
            .app_data(json)
            .app_data(query)
            .route("/openapi.json", web::get().to(openapi::serve))
            .default_service(web::to(openapi::unrouted)),
    );
    crate::dashboard::configure(cfg);
}
