//! `GET /api/v1/addresses/{ip}`: one address's page on the dashboard.

use actix_web::{HttpResponse, get, web};
use chrono::{Duration, Utc};
use iptrack_entity::query::{
    addresses::{self, AddressProfile},
    stats::MAX_TOP,
};
use serde::Deserialize;

use super::{AdminState, ApiError, ErrorBody, auth::Admin, params, schema, stats};

/// Range when the request names none: the last 24 hours.
const DEFAULT_RANGE: Duration = Duration::hours(24);
const DEFAULT_TOP: u64 = 10;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct AddressPath {
    /// An IPv4 or IPv6 address in any textual form; answered in canonical form
    /// (IPv4-mapped IPv6 as IPv4).
    #[param(schema_with = schema::ip_address)]
    ip: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct AddressQuery {
    /// Start of the range, rounded down to the bucket; default 24 h before `until`.
    /// Must be earlier than `until`, and at most 90 days before it.
    #[param(schema_with = schema::date_time)]
    since: Option<String>,
    /// End of the range (exclusive); default now.
    #[param(schema_with = schema::date_time)]
    until: Option<String>,
    /// Length of the chart's buckets. Default: `minute` for ranges up to 24 h, `hour` up
    /// to 14 days, `day` beyond. A range may have at most 1,500 buckets.
    #[param(schema_with = stats::bucket_schema)]
    bucket: Option<String>,
    /// Entries in `top_paths` and `user_agents`.
    #[param(schema_with = stats::top_schema)]
    top: Option<String>,
}

#[utoipa::path(
    operation_id = "get_address",
    tag = "addresses",
    params(AddressPath, AddressQuery),
    responses(
        (status = 200, description = "The address's requests in the range, its location, flags, \
                                        bans and the blocks covering it (zeros and empty lists \
                                        for an address never seen)", body = AddressProfile),
        (status = 400, description = "`ip` is not an IP address, a parameter is invalid, `since` \
                                        is not earlier than `until`, the range is longer than 90 \
                                        days, or it would have more than 1,500 buckets", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/addresses/{ip}")]
pub(super) async fn show(
    _: Admin,
    state: web::Data<AdminState>,
    path: web::Path<AddressPath>,
    query: web::Query<AddressQuery>,
) -> Result<HttpResponse, ApiError> {
    let ip: std::net::IpAddr = params::address("ip", Some(&path.ip))?
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| ApiError::BadRequest(format!("ip: {:?} is not an IP address", path.ip)))?;
    let timeline = params::timeline(
        query.since.as_deref(),
        query.until.as_deref(),
        query.bucket.as_deref(),
        DEFAULT_RANGE,
    )?;
    let top = params::count("top", query.top.as_deref(), DEFAULT_TOP, MAX_TOP)?;
    let entries = iptrack_core::blocklist::covering_entries(ip);
    let profile = addresses::profile(
        &state.db,
        &ip.to_string(),
        &entries,
        &timeline,
        top,
        Utc::now(),
    )
    .await
    .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(profile))
}
