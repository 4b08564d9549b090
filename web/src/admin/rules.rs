//! `GET /api/v1/rules`: the streaming detection rules in force (`IPTRACK_DETECT_RULES`)
//! and how bans escalate, as this process's settings hold them. The workers evaluate the
//! rules from their own settings; a deployment gives every process the same environment.

use actix_web::{HttpResponse, get, web};
use serde::Serialize;

use super::{AdminState, ApiError, ErrorBody, auth::Admin};

/// One streaming rule.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Rule {
    /// Shown in `suspicious_ip.rule` and in `blocked_ip.source` as `rule:NAME`.
    name: String,
    /// Upper-case methods counted; empty: every method.
    methods: Vec<String>,
    /// Canonical path; a final `/*` covers the path and everything below it.
    path: String,
    /// Statuses counted, codes (`401`) or classes (`4xx`); empty: every status.
    statuses: Vec<String>,
    /// Requests of one address within the window that fire the rule.
    #[schema(minimum = 1, maximum = 10000)]
    count: u32,
    #[schema(minimum = 1, maximum = 86400)]
    window_secs: u64,
    /// The ban before escalation; `null`: the rule only flags.
    #[schema(minimum = 1)]
    ban_secs: Option<u64>,
    /// Flags and notifies, never blocks.
    dry_run: bool,
}

/// How repeat offenders' bans grow.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Escalation {
    /// Each ban of an address banned before lasts this many times its previous ban
    /// (`1`: no escalation).
    factor: f64,
    /// Escalation never makes a ban longer than this.
    max_secs: u64,
    /// Bans older than this do not count.
    memory_secs: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(super) struct Rules {
    rules: Vec<Rule>,
    escalation: Escalation,
}

#[utoipa::path(
    operation_id = "list_rules",
    tag = "rules",
    responses(
        (status = 200, description = "Streaming detection rules in force, in the order they are configured, and ban escalation", body = Rules),
        (status = 401, description = "Missing or wrong bearer token", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
#[get("/rules")]
pub(super) async fn list(_: Admin, state: web::Data<AdminState>) -> Result<HttpResponse, ApiError> {
    let settings = &state.detect;
    let rules = settings
        .rules
        .iter()
        .map(|rule| Rule {
            name: rule.name.clone(),
            methods: rule.methods.clone(),
            path: rule.path.to_string(),
            statuses: rule.statuses.iter().map(ToString::to_string).collect(),
            count: rule.count,
            window_secs: rule.window.as_secs(),
            ban_secs: rule.ban.map(|ban| ban.as_secs()),
            dry_run: rule.dry_run,
        })
        .collect();
    Ok(HttpResponse::Ok().json(Rules {
        rules,
        escalation: Escalation {
            factor: settings.ban_escalation,
            max_secs: settings.ban_max.as_secs(),
            memory_secs: settings.ban_memory.as_secs(),
        },
    }))
}
