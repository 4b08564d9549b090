//! Pages of `request_log`, newest first, with an opaque cursor.
//!
//! Order is `(timestamp DESC, id DESC)`: the time index serves it (the address index when
//! one address is asked for), and `id` breaks ties between rows of the same instant so no
//! row is skipped or repeated across pages while new rows arrive (they sort before the
//! first page, never inside a later one).
//!
//! A sparse filter (a path, a class, a country seldom seen) must not make one request read
//! the whole table looking for a page of matches. So a filtered page examines at most
//! [`MAX_EXAMINED`] rows: it first finds the last of them (the scan's bound), then reads
//! the matches at or after it. When the bound cut the scan short the page may hold fewer
//! rows than asked for, and still has a `next_cursor`: the bound, from where the next
//! page goes on.
//!
//! A network filter is SQL on PostgreSQL (`inet`); SQLite has no address type, so there
//! the bounded rows are read in chunks and matched here.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, Select,
    sea_query::{Expr, ExprTrait, Func, LikeExpr},
};
use serde::Serialize;

use super::status_class::StatusClass;
use crate::request_log::{self, Column};

/// Rows per page when the caller does not say.
pub const DEFAULT_PAGE_SIZE: u64 = 100;
/// Most rows one page holds; larger requests are refused, not truncated.
pub const MAX_PAGE_SIZE: u64 = 1_000;
/// Most rows one filtered page examines (see the module's comment).
pub const MAX_EXAMINED: u64 = 20_000;
/// Rows read at a time where the network is matched here (SQLite).
const CHUNK_ROWS: u64 = 2_000;

/// Which rows to return. Empty filters match everything.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// Exact client address (as stored: `203.0.113.9`, `2001:db8::1`).
    pub ip_address: Option<String>,
    /// Paths starting with this text.
    pub path_prefix: Option<String>,
    pub status: Option<i32>,
    /// Addresses in this network (exclusive with `ip_address`).
    pub network: Option<NetworkFilter>,
    /// Upper-case HTTP method; rows compare upper-cased.
    pub method: Option<String>,
    pub class: Option<StatusClass>,
    pub country: Option<CountryFilter>,
    /// `timestamp >= since`.
    pub since: Option<DateTime<Utc>>,
    /// `timestamp < until`.
    pub until: Option<DateTime<Utc>>,
}

impl LogFilter {
    /// Whether a filter narrows the rows beyond the range, the cursor and one address,
    /// which an index serves in order: then the scan is bounded.
    fn is_sparse(&self) -> bool {
        self.path_prefix.is_some()
            || self.status.is_some()
            || self.network.is_some()
            || self.method.is_some()
            || self.class.is_some()
            || self.country.is_some()
    }
}

/// Rows by country.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CountryFilter {
    /// This ISO 3166-1 alpha-2 code (upper case).
    Code(String),
    /// Rows with no country: not located (yet), private, or not found.
    Unknown,
}

/// Why a filter's text was refused. The messages leave out the parameter's name: the API
/// and the CLI each put their own before them.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BadFilter {
    #[error("{0:?} is not a network in CIDR form")]
    NotNetwork(String),
    /// Matching it would silently mean the network it is in, so that is named instead.
    #[error("{given} has host bits set; give the network form, {network}")]
    HostBitsSet { given: String, network: IpNet },
    #[error("{0:?} is not an HTTP method: 1 to 16 letters")]
    NotMethod(String),
    #[error("{0:?} is not a two-letter country code (ISO 3166-1 alpha-2) or unknown")]
    NotCountry(String),
    #[error("must be an HTTP status code (100 to 599)")]
    NotStatus,
}

/// A response status as the filter takes it: 100 to 599.
pub fn parse_status(text: &str) -> Result<i32, BadFilter> {
    match text.parse::<i32>() {
        Ok(code) if (100..=599).contains(&code) => Ok(code),
        _ => Err(BadFilter::NotStatus),
    }
}

impl std::str::FromStr for CountryFilter {
    type Err = BadFilter;

    /// A code in any case (compared upper-case), or `unknown`.
    fn from_str(text: &str) -> Result<Self, BadFilter> {
        if text == "unknown" {
            Ok(CountryFilter::Unknown)
        } else if text.len() == 2 && text.bytes().all(|b| b.is_ascii_alphabetic()) {
            Ok(CountryFilter::Code(text.to_ascii_uppercase()))
        } else {
            Err(BadFilter::NotCountry(text.to_owned()))
        }
    }
}

/// An HTTP method as the filter compares it: 1 to 16 letters, any case, upper-cased.
pub fn parse_method(text: &str) -> Result<String, BadFilter> {
    if (1..=16).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphabetic()) {
        Ok(text.to_ascii_uppercase())
    } else {
        Err(BadFilter::NotMethod(text.to_owned()))
    }
}

/// The networks whose addresses match a network filter. Addresses are stored canonical
/// (IPv4-mapped IPv6 as IPv4), so a network asked for in the mapped range
/// (`::ffff:203.0.113.0/120`) matches as the IPv4 network it stands for, and an IPv6
/// network that holds the whole mapped range (`::/80`) matches every IPv4 address too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkFilter {
    networks: Vec<IpNet>,
}

impl std::str::FromStr for NetworkFilter {
    type Err = BadFilter;

    /// A network in CIDR form with its host bits zero.
    fn from_str(text: &str) -> Result<Self, BadFilter> {
        let net: IpNet = text
            .parse()
            .map_err(|_| BadFilter::NotNetwork(text.to_owned()))?;
        if net.trunc() != net {
            return Err(BadFilter::HostBitsSet {
                given: text.to_owned(),
                network: net.trunc(),
            });
        }
        Ok(Self::new(net))
    }
}

impl NetworkFilter {
    /// `network` must have its host bits zero (callers refuse it otherwise).
    pub fn new(network: IpNet) -> Self {
        let network = network.trunc();
        let mut networks = Vec::with_capacity(2);
        match network {
            IpNet::V6(v6) => {
                let mapped = Ipv6Net::new(std::net::Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96)
                    .unwrap_or(v6);
                if v6.prefix_len() >= 96
                    && let Some(v4) = v6.network().to_ipv4_mapped()
                    && let Ok(net) = Ipv4Net::new(v4, v6.prefix_len() - 96)
                {
                    networks.push(IpNet::V4(net));
                } else {
                    networks.push(network);
                    if v6.contains(&mapped) {
                        networks.push(IpNet::V4(Ipv4Net::default()));
                    }
                }
            }
            IpNet::V4(_) => networks.push(network),
        }
        Self { networks }
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.networks.iter().any(|net| net.contains(ip))
    }

    /// A condition in SQL that every match meets (and most non-matches fail), for SQLite,
    /// which has no address type: an IPv4 network's whole leading octets as a text prefix
    /// (`198.51.100.0/24`: `198.51.100.%`), or at least no `:`; an IPv6 network, a `:`.
    /// Canonical IPv6 text compresses zeros, so no prefix of it is safe to use.
    fn sqlite_prefilter(&self) -> Condition {
        self.networks
            .iter()
            .fold(Condition::any(), |any, net| match net {
                IpNet::V4(v4) => {
                    let octets = usize::from(v4.prefix_len() / 8);
                    if octets == 0 {
                        any.add(Column::IpAddress.not_like("%:%"))
                    } else {
                        let lead: Vec<String> = v4.network().octets()[..octets]
                            .iter()
                            .map(u8::to_string)
                            .collect();
                        // An address with all four octets is the whole text: no `%`.
                        let pattern = if octets == 4 {
                            lead.join(".")
                        } else {
                            format!("{}.%", lead.join("."))
                        };
                        any.add(Column::IpAddress.like(pattern))
                    }
                }
                IpNet::V6(_) => any.add(Column::IpAddress.like("%:%")),
            })
    }

    /// The condition on PostgreSQL: `ip_address` is text (always an address the server
    /// formatted, so the cast cannot fail); each network is bound as text and cast in
    /// SQL, so no parameter's type is left for PostgreSQL to infer.
    fn postgres_condition(&self) -> Condition {
        self.networks.iter().fold(Condition::any(), |any, net| {
            any.add(Expr::cust_with_values(
                "CAST(ip_address AS inet) <<= CAST($1 AS inet)",
                [net.to_string()],
            ))
        })
    }
}

/// Where the previous page ended: the last row's `(timestamp, id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    timestamp: DateTime<Utc>,
    id: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid cursor; pass back the next_cursor of a previous page unchanged")]
pub struct BadCursor;

impl Cursor {
    /// Text form: hex of `<unix nanoseconds>:<id>`. Hex keeps it URL-safe without escaping;
    /// clients are told it is opaque, so its form can change.
    pub fn encode(&self) -> String {
        let nanos = self.timestamp.timestamp_nanos_opt().unwrap_or(i64::MAX);
        format!("{nanos}:{}", self.id)
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    pub fn decode(text: &str) -> Result<Self, BadCursor> {
        if text.is_empty() || text.len() > 80 || !text.len().is_multiple_of(2) {
            return Err(BadCursor);
        }
        let bytes = (0..text.len())
            .step_by(2)
            .map(|i| {
                u8::from_str_radix(text.get(i..i + 2).ok_or(BadCursor)?, 16).map_err(|_| BadCursor)
            })
            .collect::<Result<Vec<u8>, _>>()?;
        let plain = String::from_utf8(bytes).map_err(|_| BadCursor)?;
        let (nanos, id) = plain.split_once(':').ok_or(BadCursor)?;
        let nanos: i64 = nanos.parse().map_err(|_| BadCursor)?;
        let id: i64 = id.parse().map_err(|_| BadCursor)?;
        Ok(Self {
            timestamp: DateTime::from_timestamp_nanos(nanos),
            id,
        })
    }
}

/// One page and where the next one starts (`None`: this was the last).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogPage {
    pub items: Vec<request_log::Model>,
    /// Pass as `cursor` to get the following (older) rows; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Up to `page_size` rows matching `filter`, after `cursor` (from the start when `None`).
/// `page_size` is clamped to `1..=MAX_PAGE_SIZE`; callers that take it from users check
/// the bound first and say so.
pub async fn page<C: ConnectionTrait>(
    db: &C,
    filter: &LogFilter,
    cursor: Option<Cursor>,
    page_size: u64,
) -> Result<LogPage, DbErr> {
    let page_size = page_size.clamp(1, MAX_PAGE_SIZE);
    let backend = db.get_database_backend();
    let scan = scan_condition(filter, cursor);
    if !filter.is_sparse() {
        let items = ordered(scan).limit(page_size + 1).all(db).await?;
        return Ok(finish(items, page_size, None));
    }
    let bound = find_bound(db, scan.clone()).await?;
    let within = within_bound(filter, backend, scan, bound);
    let items = match (&filter.network, backend) {
        (Some(network), DbBackend::Sqlite | DbBackend::MySql) => {
            matching_in_chunks(db, within, network, page_size + 1).await?
        }
        _ => ordered(within).limit(page_size + 1).all(db).await?,
    };
    Ok(finish(items, page_size, bound))
}

/// The query of a filtered page's bound: the last row it may examine.
fn bound_query(scan: Condition) -> Select<request_log::Entity> {
    ordered(scan)
        .select_only()
        .column(Column::Timestamp)
        .column(Column::Id)
        .offset(MAX_EXAMINED - 1)
        .limit(1)
}

/// The bound of a filtered page walking `scan`; none when fewer rows remain.
async fn find_bound<C: ConnectionTrait>(db: &C, scan: Condition) -> Result<Option<Cursor>, DbErr> {
    Ok(bound_query(scan)
        .into_tuple::<(DateTime<Utc>, i64)>()
        .one(db)
        .await?
        .map(|(timestamp, id)| Cursor { timestamp, id }))
}

/// The rows a filtered page's matches are read from: the scan's, meeting the filters, at
/// or after the bound.
fn within_bound(
    filter: &LogFilter,
    backend: DbBackend,
    scan: Condition,
    bound: Option<Cursor>,
) -> Condition {
    let within = scan.add(matches_sql(filter, backend));
    match bound {
        Some(bound) => within.add(at_or_after(bound)),
        None => within,
    }
}

/// The page from `items` (up to `page_size + 1` matches): the next page starts after its
/// last row when there are more, or after the scan's bound when it stopped there.
fn finish(mut items: Vec<request_log::Model>, page_size: u64, bound: Option<Cursor>) -> LogPage {
    let next = if items.len() as u64 > page_size {
        items.truncate(page_size as usize);
        items.last().map(|row| Cursor {
            timestamp: row.timestamp,
            id: row.id,
        })
    } else {
        bound
    };
    LogPage {
        items,
        next_cursor: next.map(|cursor| cursor.encode()),
    }
}

/// The rows a page walks through, whatever else it filters: the range, the cursor and
/// the address (each served by an index in the page's order).
fn scan_condition(filter: &LogFilter, cursor: Option<Cursor>) -> Condition {
    let mut condition = Condition::all();
    if let Some(ip) = &filter.ip_address {
        condition = condition.add(Column::IpAddress.eq(ip.as_str()));
    }
    if let Some(since) = filter.since {
        condition = condition.add(Column::Timestamp.gte(since));
    }
    if let Some(until) = filter.until {
        condition = condition.add(Column::Timestamp.lt(until));
    }
    if let Some(cursor) = cursor {
        // The range half comes first so the planner can bound the index scan with it.
        condition = condition.add(Column::Timestamp.lte(cursor.timestamp)).add(
            Condition::any()
                .add(Column::Timestamp.lt(cursor.timestamp))
                .add(Column::Id.lt(cursor.id)),
        );
    }
    condition
}

/// Rows at or after `bound` in the page's order (newer, or as new with a larger id).
fn at_or_after(bound: Cursor) -> Condition {
    Condition::all()
        .add(Column::Timestamp.gte(bound.timestamp))
        .add(
            Condition::any()
                .add(Column::Timestamp.gt(bound.timestamp))
                .add(Column::Id.gte(bound.id)),
        )
}

/// The filters other than the scan's, in SQL (the network only on PostgreSQL).
fn matches_sql(filter: &LogFilter, backend: DbBackend) -> Condition {
    let mut condition = Condition::all();
    if let Some(prefix) = &filter.path_prefix {
        condition = condition.add(
            Expr::col(Column::Path)
                .like(LikeExpr::new(format!("{}%", super::escape_like(prefix))).escape('\\')),
        );
    }
    if let Some(status) = filter.status {
        condition = condition.add(Column::Status.eq(status));
    }
    if let Some(method) = &filter.method {
        condition =
            condition.add(Expr::expr(Func::upper(Expr::col(Column::Method))).eq(method.as_str()));
    }
    if let Some(class) = filter.class {
        condition = condition.add(class.condition());
    }
    match &filter.country {
        Some(CountryFilter::Code(code)) => {
            condition = condition.add(Column::CountryCode.eq(code.as_str()));
        }
        Some(CountryFilter::Unknown) => condition = condition.add(Column::CountryCode.eq("")),
        None => {}
    }
    if let (Some(network), DbBackend::Postgres) = (&filter.network, backend) {
        condition = condition.add(network.postgres_condition());
    }
    condition
}

fn ordered(condition: Condition) -> Select<request_log::Entity> {
    request_log::Entity::find()
        .filter(condition)
        .order_by_desc(Column::Timestamp)
        .order_by_desc(Column::Id)
}

/// Up to `wanted` rows meeting `condition` whose address is in `network`, newest first.
/// The candidates are read [`CHUNK_ROWS`] at a time as `(timestamp, id, address)` only
/// (decoding whole rows of 20,000 candidates was most of the cost), narrowed in SQL by a
/// textual prefix where the network allows one, and matched exactly here; then the
/// matching rows are read whole by id.
async fn matching_in_chunks<C: ConnectionTrait>(
    db: &C,
    condition: Condition,
    network: &NetworkFilter,
    wanted: u64,
) -> Result<Vec<request_log::Model>, DbErr> {
    let condition = condition.add(network.sqlite_prefilter());
    let mut found: Vec<i64> = Vec::new();
    let mut after: Option<Cursor> = None;
    'chunks: loop {
        let mut chunk_condition = condition.clone();
        if let Some(cursor) = after {
            chunk_condition = chunk_condition
                .add(Column::Timestamp.lte(cursor.timestamp))
                .add(
                    Condition::any()
                        .add(Column::Timestamp.lt(cursor.timestamp))
                        .add(Column::Id.lt(cursor.id)),
                );
        }
        let chunk: Vec<(DateTime<Utc>, i64, String)> = ordered(chunk_condition)
            .select_only()
            .column(Column::Timestamp)
            .column(Column::Id)
            .column(Column::IpAddress)
            .limit(CHUNK_ROWS)
            .into_tuple()
            .all(db)
            .await?;
        let complete = (chunk.len() as u64) < CHUNK_ROWS;
        after = chunk.last().map(|(timestamp, id, _)| Cursor {
            timestamp: *timestamp,
            id: *id,
        });
        for (_, id, address) in chunk {
            // Stored addresses are ones the server formatted; anything else matches no
            // network.
            if address
                .parse::<IpAddr>()
                .is_ok_and(|ip| network.contains(&ip))
            {
                found.push(id);
                if found.len() as u64 >= wanted {
                    break 'chunks;
                }
            }
        }
        if complete || after.is_none() {
            break;
        }
    }
    if found.is_empty() {
        return Ok(Vec::new());
    }
    ordered(Condition::all().add(Column::Id.is_in(found)))
        .all(db)
        .await
}

/// The SQL of a filtered first page's two statements (the bound, then the matches), for
/// `EXPLAIN` in the benchmarks. The bound is found first, as [`page`] does, so the
/// matches statement carries it: without it the plan would show a scan of every
/// matching row that no page runs. (Where SQLite matches a network here, in chunks, the
/// matches statement shown is the SQL-only form, without the chunks' address prefilter.)
pub async fn statements<C: ConnectionTrait>(
    db: &C,
    filter: &LogFilter,
    page_size: u64,
) -> Result<Vec<sea_orm::Statement>, DbErr> {
    let backend = db.get_database_backend();
    let scan = scan_condition(filter, None);
    let bound = find_bound(db, scan.clone()).await?;
    Ok(vec![
        bound_query(scan.clone()).build(backend),
        ordered(within_bound(filter, backend, scan, bound))
            .limit(page_size + 1)
            .build(backend),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_survives_its_text_form() {
        let cursor = Cursor {
            timestamp: DateTime::from_timestamp_nanos(1_795_000_000_123_456_789),
            id: 42,
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Ok(cursor));
    }

    fn networks(text: &str) -> Vec<String> {
        let net: IpNet = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        NetworkFilter::new(net)
            .networks
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn networks_match_addresses_as_they_are_stored() {
        assert_eq!(networks("203.0.113.0/24"), ["203.0.113.0/24"]);
        assert_eq!(networks("2001:db8::/32"), ["2001:db8::/32"]);
        assert_eq!(networks("::ffff:203.0.113.0/120"), ["203.0.113.0/24"]);
        assert_eq!(networks("::ffff:0:0/96"), ["0.0.0.0/0"]);
        assert_eq!(networks("::/80"), ["::/80", "0.0.0.0/0"]);
        let filter = NetworkFilter::new(
            "::ffff:203.0.113.0/120"
                .parse()
                .unwrap_or_else(|_| unreachable!()),
        );
        assert!(filter.contains(&"203.0.113.9".parse().unwrap_or_else(|_| unreachable!())));
        assert!(!filter.contains(&"203.0.114.9".parse().unwrap_or_else(|_| unreachable!())));
        let prefilter = |text: &str| {
            use sea_orm::{QueryTrait, sea_query::SqliteQueryBuilder};
            let net: IpNet = text.parse().unwrap_or_else(|_| unreachable!());
            request_log::Entity::find()
                .filter(NetworkFilter::new(net).sqlite_prefilter())
                .into_query()
                .to_string(SqliteQueryBuilder)
                .split(" WHERE ")
                .nth(1)
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(
            prefilter("198.51.100.0/24"),
            r#""request_log"."ip_address" LIKE '198.51.100.%'"#
        );
        assert_eq!(
            prefilter("198.51.96.0/20"),
            r#""request_log"."ip_address" LIKE '198.51.%'"#
        );
        assert_eq!(
            prefilter("198.51.100.7/32"),
            r#""request_log"."ip_address" LIKE '198.51.100.7'"#
        );
        assert_eq!(
            prefilter("0.0.0.0/4"),
            r#""request_log"."ip_address" NOT LIKE '%:%'"#
        );
    }

    #[test]
    fn filter_text_is_parsed_as_the_api_and_the_cli_take_it() {
        let network = |text: &str| text.parse::<NetworkFilter>().map_err(|e| e.to_string());
        assert!(network("203.0.113.0/24").is_ok());
        assert_eq!(
            network("203.0.113.9/24"),
            Err("203.0.113.9/24 has host bits set; give the network form, 203.0.113.0/24".into())
        );
        assert_eq!(
            network("2001:db8::1/32"),
            Err("2001:db8::1/32 has host bits set; give the network form, 2001:db8::/32".into())
        );
        assert!(network("203.0.113.9").is_err());
        assert_eq!("unknown".parse(), Ok(CountryFilter::Unknown));
        assert_eq!("de".parse(), Ok(CountryFilter::Code("DE".into())));
        for bad in ["DEU", "D1", "", "Unknown"] {
            assert!(bad.parse::<CountryFilter>().is_err(), "{bad}");
        }
        assert_eq!(parse_method("post"), Ok("POST".into()));
        for bad in ["", "G3T", "GET ", &"A".repeat(17)] {
            assert!(parse_method(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_status("429"), Ok(429));
        for bad in ["99", "600", "abc", "-1"] {
            assert_eq!(parse_status(bad), Err(BadFilter::NotStatus), "{bad}");
        }
        assert_eq!("429".parse(), Ok(StatusClass::TooMany429));
        assert_eq!(
            "418".parse::<StatusClass>().map_err(|e| e.to_string()),
            Err("must be one of 2xx, 3xx, 4xx, 403, 429, 5xx, other".into())
        );
    }

    #[test]
    fn malformed_cursors_are_refused() {
        for text in [
            "",
            "zz",
            "abc",
            "3132",
            "31323a",
            "3a3132",
            "e282ac3a31",
            &"00".repeat(50),
        ] {
            assert_eq!(Cursor::decode(text), Err(BadCursor), "{text}");
        }
    }
}
