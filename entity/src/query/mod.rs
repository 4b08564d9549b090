//! Read-side queries shared by the admin API (`/api/v1/`) and the CLI (`iptrack logs`,
//! ...), so each is written once and both sides answer the same way.
//!
//! Every query here starts from an index: a range on `request_log.timestamp` (alone or
//! after `ip_address`) or on `suspicious_ip.flagged_at`, and works on SQLite and PostgreSQL.
//! `bench/src/bin/stats_query.rs` measures them and prints their plans on a large table.

pub mod addresses;
pub mod countries;
pub mod logs;
pub mod sources;
pub mod stats;
pub mod status_class;
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
