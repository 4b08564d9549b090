//! Status classes: how the dashboard groups responses, so that blocks (403) and rate limits
//! (429) stand out from the rest of 4xx.
//!
//! This file is the one definition. [`RULES`] lists the classes with their status ranges;
//! the first rule a status falls in decides. From that one table come the Rust
//! classification ([`StatusClass::of`]), the SQL `CASE` that classifies rows in a GROUP BY
//! ([`case_sql`]) and the WHERE condition of one class ([`StatusClass::condition`]), so
//! the three cannot disagree.

use sea_orm::{ColumnTrait, Condition};
use serde::Serialize;

use crate::request_log::Column;

/// A status class. Its [`name`](Self::name) is what the API takes and returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StatusClass {
    Success2xx,
    Redirect3xx,
    /// 4xx other than 403 and 429.
    Client4xx,
    Forbidden403,
    TooMany429,
    Server5xx,
    /// Anything outside the ranges above (1xx, codes past 599).
    Other,
}

/// The classes with their status ranges (inclusive), in the order they are tried: the
/// single codes come before the range that holds them. A status in none is `Other`.
const RULES: [(StatusClass, i32, i32); 6] = [
    (StatusClass::Forbidden403, 403, 403),
    (StatusClass::TooMany429, 429, 429),
    (StatusClass::Success2xx, 200, 299),
    (StatusClass::Redirect3xx, 300, 399),
    (StatusClass::Client4xx, 400, 499),
    (StatusClass::Server5xx, 500, 599),
];

impl StatusClass {
    /// Every class, in the order the API lists them.
    pub const ALL: [StatusClass; 7] = [
        StatusClass::Success2xx,
        StatusClass::Redirect3xx,
        StatusClass::Client4xx,
        StatusClass::Forbidden403,
        StatusClass::TooMany429,
        StatusClass::Server5xx,
        StatusClass::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StatusClass::Success2xx => "2xx",
            StatusClass::Redirect3xx => "3xx",
            StatusClass::Client4xx => "4xx",
            StatusClass::Forbidden403 => "403",
            StatusClass::TooMany429 => "429",
            StatusClass::Server5xx => "5xx",
            StatusClass::Other => "other",
        }
    }

    /// The class named `name` (exactly as [`name`](Self::name) spells it).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|class| class.name() == name)
    }

    /// The class of `status`.
    pub fn of(status: i32) -> Self {
        RULES
            .iter()
            .find(|(_, low, high)| (*low..=*high).contains(&status))
            .map_or(StatusClass::Other, |(class, _, _)| *class)
    }

    /// The number [`case_sql`] gives rows of this class: its place in [`ALL`](Self::ALL).
    /// `request_rollup_minute` and `request_rollup_hour` hold it too.
    pub fn code(self) -> i64 {
        Self::ALL
            .iter()
            .position(|class| *class == self)
            .unwrap_or_default() as i64
    }

    /// The class [`case_sql`] gave the number `code`.
    pub fn from_code(code: i64) -> Option<Self> {
        usize::try_from(code)
            .ok()
            .and_then(|index| Self::ALL.get(index).copied())
    }

    /// Rows of this class: within its range and in no range tried before it (`Other`: in
    /// no range at all).
    pub fn condition(self) -> Condition {
        let mut condition = Condition::all();
        for (class, low, high) in RULES {
            if class == self {
                return condition.add(Column::Status.between(low, high));
            }
            condition = condition.add(Column::Status.not_between(low, high));
        }
        condition
    }
}

/// A name that is no class's.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("must be one of {}", StatusClass::ALL.map(StatusClass::name).join(", "))]
pub struct UnknownClass;

impl std::str::FromStr for StatusClass {
    type Err = UnknownClass;

    fn from_str(name: &str) -> Result<Self, UnknownClass> {
        Self::parse(name).ok_or(UnknownClass)
    }
}

/// SQL giving each row's class number, for `GROUP BY`. On PostgreSQL a `CASE` of integer
/// literals is an `integer` (32 bits) while SQLite's integers are 64-bit; the `CAST` makes
/// it `BIGINT` on both, so it is read back as `i64` everywhere (reading PostgreSQL's
/// `integer` as `i64` fails, and the API would answer 500 on PostgreSQL only).
pub fn case_sql(column: &str) -> String {
    let arms: String = RULES
        .iter()
        .map(|(class, low, high)| {
            format!(
                "WHEN {column} BETWEEN {low} AND {high} THEN {} ",
                class.code()
            )
        })
        .collect();
    format!(
        "CAST(CASE {arms}ELSE {} END AS BIGINT)",
        StatusClass::Other.code()
    )
}

/// Requests per class; every class is always present (zeros included), keyed by name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClassCounts {
    #[serde(rename = "2xx")]
    pub success_2xx: i64,
    #[serde(rename = "3xx")]
    pub redirect_3xx: i64,
    /// 4xx other than 403 and 429.
    #[serde(rename = "4xx")]
    pub client_4xx: i64,
    #[serde(rename = "403")]
    pub forbidden_403: i64,
    #[serde(rename = "429")]
    pub too_many_429: i64,
    #[serde(rename = "5xx")]
    pub server_5xx: i64,
    /// Statuses outside 200-599.
    pub other: i64,
}

impl ClassCounts {
    pub fn get_mut(&mut self, class: StatusClass) -> &mut i64 {
        match class {
            StatusClass::Success2xx => &mut self.success_2xx,
            StatusClass::Redirect3xx => &mut self.redirect_3xx,
            StatusClass::Client4xx => &mut self.client_4xx,
            StatusClass::Forbidden403 => &mut self.forbidden_403,
            StatusClass::TooMany429 => &mut self.too_many_429,
            StatusClass::Server5xx => &mut self.server_5xx,
            StatusClass::Other => &mut self.other,
        }
    }

    pub fn total(&self) -> i64 {
        self.success_2xx
            + self.redirect_3xx
            + self.client_4xx
            + self.forbidden_403
            + self.too_many_429
            + self.server_5xx
            + self.other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_fall_in_the_documented_classes() {
        for (status, name) in [
            (200, "2xx"),
            (299, "2xx"),
            (301, "3xx"),
            (400, "4xx"),
            (401, "4xx"),
            (403, "403"),
            (404, "4xx"),
            (429, "429"),
            (499, "4xx"),
            (500, "5xx"),
            (599, "5xx"),
            (100, "other"),
            (199, "other"),
            (600, "other"),
            (0, "other"),
        ] {
            assert_eq!(StatusClass::of(status).name(), name, "{status}");
        }
    }

    #[test]
    fn names_and_codes_round_trip() {
        for class in StatusClass::ALL {
            assert_eq!(StatusClass::parse(class.name()), Some(class));
            assert_eq!(StatusClass::from_code(class.code()), Some(class));
        }
        assert_eq!(StatusClass::parse("4XX"), None);
        assert_eq!(StatusClass::from_code(7), None);
        assert_eq!(StatusClass::from_code(-1), None);
    }

    #[test]
    fn the_sql_case_tries_the_single_codes_first() {
        let sql = case_sql("status");
        let forbidden = sql.find("403 AND 403").unwrap_or(usize::MAX);
        let client = sql.find("400 AND 499").unwrap_or(0);
        assert!(forbidden < client, "{sql}");
        assert!(sql.starts_with("CAST(CASE WHEN"), "{sql}");
        assert!(sql.ends_with("ELSE 6 END AS BIGINT)"), "{sql}");
    }
}
