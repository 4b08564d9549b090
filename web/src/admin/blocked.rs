//! `/api/v1/blocked`: list, add and remove blocks, as `iptrack block` does, through the
//! same blocklist service (which refuses blocks of everyone, of safelisted addresses, and
//! without `allow_wide` of very wide networks).

use std::time::Duration;

use actix_web::{HttpResponse, delete, get, post, web};
use chrono::{DateTime, Utc};
use iptrack_core::blocklist::{
    BlockSource, display_network, parse_block_target,
    service::{BlockError, BlockMode, BlockRequest},
};
use iptrack_entity::blocked_ip;
use serde::{Deserialize, Serialize};

use super::{AdminState, ApiError, ErrorBody, auth::Admin, params, schema};

/// Longest block the API accepts for `duration_secs` (ten years); longer is "forever",
/// which is what leaving it out means.
const MAX_DURATION_SECS: u64 = 10 * 365 * 86_400;
/// Longest reason kept.
const MAX_REASON_CHARS: usize = 500;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct BlockedQuery {
    /// Only the blocks of this source: `manual`, `rule:NAME` or `feed:NAME`.
    #[param(schema_with = schema::block_source)]
    source: Option<String>,
}

#[utoipa::path(
    operation_id = "list_blocks",
    tag = "blocked",
    params(BlockedQuery),
    responses(
        (status = 200, description = "Blocks in force, oldest first, each with its source and its address's automatic ban count", body = Vec<blocked_ip::Listed>),
        (status = 400, description = "`source` is not manual, rule:NAME or feed:NAME", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/blocked")]
pub(super) async fn list(
    _: Admin,
    state: web::Data<AdminState>,
    query: web::Query<BlockedQuery>,
) -> Result<HttpResponse, ApiError> {
    if let Some(source) = &query.source {
        schema::check_block_source("source", source)?;
    }
    let blocks = blocked_ip::active_listed(&state.db, Utc::now(), query.source.as_deref())
        .await
        .map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(blocks))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewBlock {
    /// Address or CIDR network; a network's host bits must be zero (`203.0.113.0/24`,
    /// not `203.0.113.7/24`).
    #[schema(schema_with = schema::block_target)]
    address: String,
    /// Why, for the people who read the list later.
    #[serde(default)]
    #[schema(schema_with = reason_schema)]
    reason: String,
    /// Seconds the block lasts; absent or `null` means until removed.
    #[serde(default)]
    #[schema(schema_with = duration_schema)]
    duration_secs: Option<serde_json::Number>,
    /// Allow a network wider than an IPv4 /16 or an IPv6 /32. Blocks of everyone
    /// (`0.0.0.0/0`, `::/0`) and of safelisted addresses are refused even then.
    #[serde(default)]
    allow_wide: bool,
}

fn reason_schema() -> utoipa::openapi::Object {
    schema::bounded_text(MAX_REASON_CHARS)
}

fn duration_schema() -> utoipa::openapi::Object {
    schema::whole_number(1, MAX_DURATION_SECS, None, true)
}

/// The block as stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct BlockSaved {
    /// Canonical form: host bits zero, IPv4-mapped IPv6 as IPv4.
    ip_address: String,
    reason: String,
    /// `null`: until removed.
    expires_at: Option<DateTime<Utc>>,
}

#[utoipa::path(
    operation_id = "add_block",
    tag = "blocked",
    request_body = NewBlock,
    responses(
        (status = 201, description = "Blocked", body = BlockSaved),
        (status = 200, description = "Was blocked already; reason and expiry replaced", body = BlockSaved),
        (status = 400, description = "Invalid JSON, or an address, reason or duration the schema refuses, \
                                        or a network whose host bits are not zero; or a refused block: everyone, \
                                        a safelisted address, or wider than /16 (IPv4) or /32 (IPv6) without allow_wide", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 413, description = "Body larger than 16 KiB", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[post("/blocked")]
pub(super) async fn add(
    _: Admin,
    state: web::Data<AdminState>,
    body: web::Json<NewBlock>,
) -> Result<HttpResponse, ApiError> {
    let NewBlock {
        address,
        reason,
        duration_secs,
        allow_wide,
    } = body.into_inner();
    schema::check_block_target("address", &address)?;
    let network = parse_block_target(&address).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    params::storable_text("reason", &reason)?;
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(ApiError::BadRequest(format!(
            "reason is longer than {MAX_REASON_CHARS} characters"
        )));
    }
    let expires_at: Option<DateTime<Utc>> = match duration_secs.as_ref().map(whole_seconds) {
        None => None,
        Some(Some(secs)) if (1..=MAX_DURATION_SECS).contains(&secs) => {
            Some(Utc::now() + Duration::from_secs(secs))
        }
        Some(_) => {
            return Err(ApiError::BadRequest(format!(
                "duration_secs must be from 1 to {MAX_DURATION_SECS}; leave it out to block until removed"
            )));
        }
    };
    let blocked = state
        .blocklist
        .block(BlockRequest {
            network,
            reason,
            expires_at,
            allow_wide,
            mode: BlockMode::Replace,
            source: BlockSource::Manual,
        })
        .await
        .map_err(block_error)?;
    warn_if_unannounced(blocked.notice);
    let body = BlockSaved {
        ip_address: blocked.block.ip_address,
        reason: blocked.block.reason,
        expires_at: blocked.block.expires_at,
    };
    Ok(if blocked.created {
        HttpResponse::Created().json(body)
    } else {
        HttpResponse::Ok().json(body)
    })
}

/// `duration_secs` as a count of seconds. JSON has one number type, and JSON Schema's
/// `integer` (what the document says) includes `900.0` and `9e2`: those mean 900 too.
/// A fraction, a negative or a value past `u64` is `None`, and refused.
fn whole_seconds(number: &serde_json::Number) -> Option<u64> {
    if let Some(secs) = number.as_u64() {
        return Some(secs);
    }
    let value = number.as_f64()?;
    (value.fract() == 0.0 && (0.0..=MAX_DURATION_SECS as f64).contains(&value))
        .then_some(value as u64)
}

#[derive(Debug, Deserialize)]
pub(super) struct Target {
    /// Address or CIDR network to unblock, as blocked.
    address: String,
}

/// Written out because utoipa's derive marks a parameter with `schema_with` optional,
/// and `address` is required.
impl utoipa::IntoParams for Target {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::{
            Required,
            path::{ParameterBuilder, ParameterIn},
        };
        vec![
            ParameterBuilder::new()
                .name("address")
                .parameter_in(ParameterIn::Query)
                .required(Required::True)
                .description(Some("Address or CIDR network to unblock, as blocked"))
                .schema(Some(schema::block_target()))
                .build(),
        ]
    }
}

/// `DELETE /api/v1/blocked?address=203.0.113.0/24` (a query parameter, since a network
/// contains a slash).
#[utoipa::path(
    operation_id = "remove_block",
    tag = "blocked",
    params(Target),
    responses(
        (status = 204, description = "Unblocked"),
        (status = 400, description = "Not an address or network", body = ErrorBody),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "It was not blocked", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[delete("/blocked")]
pub(super) async fn remove(
    _: Admin,
    state: web::Data<AdminState>,
    target: web::Query<Target>,
) -> Result<HttpResponse, ApiError> {
    schema::check_block_target("address", &target.address)?;
    let network =
        parse_block_target(&target.address).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let unblocked = state
        .blocklist
        .unblock(network)
        .await
        .map_err(block_error)?;
    if !unblocked.removed {
        return Err(ApiError::NotFound(format!(
            "{} is not blocked",
            display_network(&network)
        )));
    }
    warn_if_unannounced(unblocked.notice);
    Ok(HttpResponse::NoContent().finish())
}

/// A refusal is the client's mistake (400); a database failure is ours (500).
fn block_error(error: BlockError) -> ApiError {
    match error {
        BlockError::Refused(refusal) => ApiError::BadRequest(refusal.to_string()),
        BlockError::Database(error) => ApiError::internal(error),
    }
}

/// The table is already changed; a lost notice is repaired by the instances' reloads.
fn warn_if_unannounced(notice: Result<(), redis::RedisError>) {
    if let Err(error) = notice {
        tracing::warn!(%error, "block saved, but the change notice failed; instances reload it");
    }
}
