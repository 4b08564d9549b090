//! Pages of `request_log`, newest first, with an opaque cursor.
//!
//! Order is `(timestamp DESC, id DESC)`: the time index serves it, and `id` breaks ties
//! between rows of the same instant so no row is skipped or repeated across pages while
//! new rows arrive (they sort before the first page, never inside a later one).

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
    sea_query::{Expr, ExprTrait, LikeExpr},
};
use serde::Serialize;

use crate::request_log;

/// Rows per page when the caller does not say.
pub const DEFAULT_PAGE_SIZE: u64 = 100;
/// Most rows one page holds; larger requests are refused, not truncated.
pub const MAX_PAGE_SIZE: u64 = 1_000;

/// Which rows to return. Empty filters match everything.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// Exact client address (as stored: `203.0.113.9`, `2001:db8::1`).
    pub ip_address: Option<String>,
    /// Paths starting with this text.
    pub path_prefix: Option<String>,
    pub status: Option<i32>,
    /// `timestamp >= since`.
    pub since: Option<DateTime<Utc>>,
    /// `timestamp < until`.
    pub until: Option<DateTime<Utc>>,
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
    use request_log::Column;
    let page_size = page_size.clamp(1, MAX_PAGE_SIZE);
    let mut condition = Condition::all();
    if let Some(ip) = &filter.ip_address {
        condition = condition.add(Column::IpAddress.eq(ip.as_str()));
    }
    if let Some(prefix) = &filter.path_prefix {
        condition = condition.add(
            Expr::col(Column::Path)
                .like(LikeExpr::new(format!("{}%", super::escape_like(prefix))).escape('\\')),
        );
    }
    if let Some(status) = filter.status {
        condition = condition.add(Column::Status.eq(status));
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
    let mut items = request_log::Entity::find()
        .filter(condition)
        .order_by_desc(Column::Timestamp)
        .order_by_desc(Column::Id)
        .limit(page_size + 1)
        .all(db)
        .await?;
    let next_cursor = if items.len() as u64 > page_size {
        items.truncate(page_size as usize);
        items.last().map(|row| {
            Cursor {
                timestamp: row.timestamp,
                id: row.id,
            }
            .encode()
        })
    } else {
        None
    };
    Ok(LogPage { items, next_cursor })
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
