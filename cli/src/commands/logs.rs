//! `iptrack logs`: the most recent request-log rows, through the same query as the admin
//! API's `GET /api/v1/logs` (`iptrack_entity::query::logs`), following its cursor when
//! more rows are asked for than one page holds.

use std::net::IpAddr;

use crate::output::say;
use anyhow::Context;
use chrono::{DateTime, Utc};
use iptrack_core::Settings;
use iptrack_entity::query::{
    logs::{self, CountryFilter, Cursor, LogFilter, NetworkFilter},
    status_class::StatusClass,
};

/// The arguments of `iptrack logs`. Each value is parsed by the same code as the API's
/// parameter (`iptrack_entity::query::logs`, `StatusClass`), so both take and refuse the
/// same text with the same words; clap turns a refusal into one line and status 2.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Only requests from this address. Not together with --network.
    #[arg(long, value_parser = crate::parse_ip, conflicts_with = "network")]
    ip: Option<IpAddr>,
    /// Only addresses in this network (203.0.113.0/24, 2001:db8::/32; host bits zero).
    #[arg(long, value_name = "CIDR")]
    network: Option<NetworkFilter>,
    /// Only paths starting with this text, e.g. /login.
    #[arg(long, value_name = "PREFIX")]
    path: Option<String>,
    /// Only this HTTP method (any case).
    #[arg(long, value_name = "M", value_parser = logs::parse_method)]
    method: Option<String>,
    /// Only this response status, e.g. 403.
    #[arg(long, value_name = "N", value_parser = logs::parse_status)]
    status: Option<i32>,
    /// Only this status class: 2xx, 3xx, 4xx (other than 403 and 429), 403, 429, 5xx, other.
    #[arg(long, value_name = "C")]
    class: Option<StatusClass>,
    /// Only requests from this country (ISO 3166-1 alpha-2, any case), or unknown for
    /// requests with no country.
    #[arg(long, value_name = "CC|unknown")]
    country: Option<CountryFilter>,
    /// Requests at or after this time (RFC 3339, e.g. 2026-11-21T10:00:00Z).
    #[arg(long, value_parser = crate::parse_time)]
    since: Option<DateTime<Utc>>,
    /// Requests before this time (RFC 3339); later than --since.
    #[arg(long, value_parser = crate::parse_time)]
    until: Option<DateTime<Utc>>,
    /// How many requests to show.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    limit: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// `--since` not earlier than `--until`: bad input, as the API's 400 for the same.
#[derive(Debug, thiserror::Error)]
#[error("--since must be earlier than --until")]
pub struct BadRange;

pub async fn run(settings: &Settings, args: LogsArgs) -> anyhow::Result<()> {
    if let (Some(since), Some(until)) = (args.since, args.until)
        && since >= until
    {
        return Err(BadRange.into());
    }
    let filter = LogFilter {
        ip_address: args.ip.map(|ip| ip.to_string()),
        // An empty prefix matches every path; the API treats it as absent too.
        path_prefix: args.path.filter(|p| !p.is_empty()),
        status: args.status,
        network: args.network,
        method: args.method,
        class: args.class,
        country: args.country,
        since: args.since,
        until: args.until,
    };
    let (limit, json) = (args.limit, args.json);
    let db = super::connect_db(settings).await?;
    let mut rows = Vec::new();
    let mut cursor = None;
    while (rows.len() as u64) < limit {
        let wanted = (limit - rows.len() as u64).min(logs::MAX_PAGE_SIZE);
        let page = logs::page(&db, &filter, cursor, wanted)
            .await
            .context("cannot read request_log")?;
        rows.extend(page.items);
        match page.next_cursor.as_deref().map(Cursor::decode) {
            Some(Ok(next)) => cursor = Some(next),
            _ => break,
        }
    }
    if json {
        say!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        say!("no requests logged");
        return Ok(());
    }
    let mut table = super::table(&[
        "time (UTC)",
        "address",
        "method",
        "path",
        "status",
        "country",
    ]);
    for row in rows {
        table.add_row(vec![
            row.timestamp.format("%Y-%m-%d %H:%M:%S").to_string(),
            row.ip_address,
            row.method,
            row.path,
            row.status.to_string(),
            row.country_code,
        ]);
    }
    say!("{table}");
    Ok(())
}
