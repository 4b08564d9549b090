//! `canonical_path` against the path actix-web's router matches routes with
//! (`actix_web::dev::Url`): the two must agree, or a spelling could reach a handler
//! without meeting the rule that covers it.

use actix_web::{dev::Url, http::Uri};
use iptrack_core::path::canonical_path;
use proptest::prelude::*;

/// What the router compares with its route patterns, for a raw path.
fn routed(path: &str) -> Option<String> {
    let uri: Uri = path.parse().ok()?;
    Some(Url::new(uri).path().to_owned())
}

/// `text` with the hex of its escapes in upper case. The router keeps `%2f`, `%2b` and
/// `%25` as they are written; the canonical form also merges their hex case, which
/// joins spellings (never splits them), so the comparison allows for it.
fn upper_escapes(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '%' {
            let hex: String = chars.by_ref().take(2).collect();
            out.push_str(&hex.to_ascii_uppercase());
        }
    }
    out
}

/// Request paths the HTTP parser accepts: the characters `http` lets through literally,
/// and escapes of any byte (hex in either case). No stray `%`: the router keeps one as it
/// is and the canonical form encodes it, which only merges spellings, never splits them.
fn request_path() -> impl Strategy<Value = String> {
    "/([!$&-;=@-_a-z|~\"{}]|%[0-9a-fA-F]{2})*"
}

proptest! {
    /// Routing the canonical path lands where routing the raw one does.
    #[test]
    fn the_canonical_path_routes_where_the_raw_path_routes(path in request_path()) {
        let Some(raw) = routed(&path) else { return Ok(()) };
        let canonical = canonical_path(&path);
        prop_assert_eq!(
            routed(&canonical).map(|p| upper_escapes(&p)),
            Some(upper_escapes(&raw)),
            "canonical {}",
            canonical
        );
    }

    /// Two spellings the router sees as one path have one canonical form.
    #[test]
    fn spellings_the_router_merges_have_one_canonical_form(
        path in "/([!$&-;=@-_a-z|~\"{}])*",
        choices in proptest::collection::vec(0u8..3, 0..100),
    ) {
        let mut respelled = String::new();
        for (i, c) in path.chars().enumerate() {
            match choices.get(i).copied().unwrap_or(0) {
                _ if matches!(c, '/' | '+') => respelled.push(c),
                1 => respelled.push_str(&format!("%{:02X}", c as u32)),
                2 => respelled.push_str(&format!("%{:02x}", c as u32)),
                _ => respelled.push(c),
            }
        }
        let (Some(a), Some(b)) = (routed(&path), routed(&respelled)) else {
            return Ok(());
        };
        prop_assert_eq!(a, b, "the generator respells only what the router decodes");
        prop_assert_eq!(canonical_path(&path), canonical_path(&respelled));
    }
}

#[test]
fn the_issues_spellings_route_and_canonicalise_alike() {
    for path in ["/login", "/%6cogin", "/%6Cogin", "/logi%6e"] {
        assert_eq!(routed(path).as_deref(), Some("/login"), "{path}");
        assert_eq!(canonical_path(path), "/login", "{path}");
    }
    // Spellings the router does not take for /login are not /login canonically either.
    for path in [
        "/login/",
        "//login",
        "/./login",
        "/Login",
        "/login%2f",
        "/login;x",
    ] {
        assert_ne!(routed(path).as_deref(), Some("/login"), "{path}");
        assert_ne!(canonical_path(path), "/login", "{path}");
    }
}
