//! Read-side queries shared by the admin API (`/api/v1/`) and the CLI (`iptrack logs`,
//! ...), so each is written once and both sides answer the same way.
//!
//! Every query here starts from an index: a range on `request_log.timestamp` (alone, with
//! `status` for the charts, or after `ip_address`), on `suspicious_ip.flagged_at`, or one
//! address's rows of `suspicious_ip`, `ban_history` and `blocked_ip`; a filtered log page
//! examines a bounded number of rows. All work on SQLite and PostgreSQL.
//! `bench/src/bin/stats_query.rs` and `bench/src/bin/dashboard_queries.rs` measure them
//! and print their plans on a large table.

pub mod addresses;
pub mod countries;
pub mod logs;
pub mod rollup;
pub mod sources;
pub mod stats;
pub mod status_class;
pub mod summaries;
pub mod suspicious;
pub mod timeline;

/// Escapes LIKE's wildcards so a prefix matches only itself (used with `ESCAPE '\'`).
pub(crate) fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like("/a_b%c\\"), "/a\\_b\\%c\\\\");
    }
}
