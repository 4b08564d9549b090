//! `GET /api/v1/meta`: facts about this deployment that the dashboard shows.

use actix_web::{HttpResponse, get, web};
use iptrack_core::geo_attribution::Geolocation;
use serde::Serialize;

use super::{AdminState, ApiError, ErrorBody, auth::Admin};

/// DB-IP's free databases are licensed CC BY 4.0: pages that show their data must credit
/// them with this line and link.
const DBIP_ATTRIBUTION: Attribution = Attribution {
    text: "IP Geolocation by DB-IP",
    url: "https://db-ip.com",
};

#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub(super) struct Attribution {
    text: &'static str,
    url: &'static str,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Meta {
    /// iptrack's version.
    version: &'static str,
    /// Credit the geolocation data requires, to show beside it; `null` when none is due.
    geo_attribution: Option<Attribution>,
    /// Whether the workers geolocate requests (`off`: countries and cities stay empty),
    /// as the worker started last published it; `unknown` when no worker has said.
    geolocation: GeolocationState,
}

/// `iptrack_core::geo_attribution::Geolocation` as the API spells it.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum GeolocationState {
    On,
    Off,
    Unknown,
}

impl From<Geolocation> for GeolocationState {
    fn from(state: Geolocation) -> Self {
        match state {
            Geolocation::On => Self::On,
            Geolocation::Off => Self::Off,
            Geolocation::Unknown => Self::Unknown,
        }
    }
}

#[utoipa::path(
    operation_id = "get_meta",
    tag = "meta",
    responses(
        (status = 200, description = "About this deployment", body = Meta),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/meta")]
pub(super) async fn show(_: Admin, state: web::Data<AdminState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(Meta {
        version: env!("CARGO_PKG_VERSION"),
        geo_attribution: state
            .geo_attribution
            .requires_dbip()
            .await
            .then_some(DBIP_ATTRIBUTION),
        geolocation: state.geo_attribution.geolocation().await.into(),
    }))
}
