//! One canonical spelling per request path, for every rule that looks at paths (rate-limit
//! rules, the sensitive-path rule of the flag job) and for the path stored in `request_log`.
//!
//! Why: actix-web's router percent-decodes the path before it matches routes, so
//! `/%6cogin`, `/%6Cogin` and `/logi%6e` all reach the `/login` handler. A rule that
//! compared the raw text would not see them, and an attacker could spell their way past
//! it. What the router does (actix-router 0.5, `Url::new`, `Quoter::new(b"", b"%/+")`):
//! it decodes every `%XY` escape (hex in either case) except `%25` (`%`), `%2F` (`/`) and
//! `%2B` (`+`), turns invalid UTF-8 into U+FFFD, and then compares the result with the
//! route patterns byte for byte. It does not remove dot-segments, merge slashes, ignore a
//! trailing slash or fold letter case: `/./login`, `//login`, `/login/` and `/Login` are
//! not `/login` to it (404).
//!
//! The canonical form follows RFC 3986 section 6.2.2:
//! - 6.2.2.1: the hex digits of the escapes that remain are upper case (`%2f` → `%2F`);
//! - 6.2.2.2: escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded;
//! - beyond the RFC, because the router treats them as the same path: escapes of the other
//!   characters a path may hold literally (`! $ & ' ( ) * , ; = : @`) are decoded too, and
//!   literal characters that a path should not hold but the HTTP parser lets through
//!   (`" [ \ ] ^ { | }`, anything outside visible ASCII) are encoded, so `/a%7Bb` and
//!   `/a{b` are one path. `%2B`, `%2F` and `%25` stay encoded, as the router keeps them.
//! - A `%` that does not start a valid escape (`%zz`, a truncated `%4`) becomes `%25`: the
//!   result is always well-formed, and the function never fails.
//! - 6.2.2.3 (dot-segments) is deliberately not applied: the router does not resolve them,
//!   so `/admin/../login` never reaches the login handler, and the stored path keeps what
//!   the client asked for. Nor are `//` merged or a trailing `/` dropped, for the same reason.
//!
//! So two spellings the router routes alike get the same canonical form (save different
//! invalid UTF-8, which the router turns into the same U+FFFD), and the function is
//! idempotent. A path that is already canonical is returned borrowed: no allocation on
//! the request path for the usual request.

use std::borrow::Cow;

/// The canonical spelling of a request path (see the module documentation). Give it the
/// raw path (`HttpRequest::path()`, without the query string).
pub fn canonical_path(raw: &str) -> Cow<'_, str> {
    let bytes = raw.as_bytes();
    match first_change(bytes) {
        None => Cow::Borrowed(raw),
        Some(first) => {
            let mut out = String::with_capacity(raw.len() + 8);
            // Everything before `first` is canonical as it stands, and ASCII.
            out.push_str(&raw[..first]);
            let mut i = first;
            while i < bytes.len() {
                i += push_canonical(bytes, i, &mut out);
            }
            Cow::Owned(out)
        }
    }
}

/// The first byte where the canonical form differs from `bytes`, if any.
fn first_change(bytes: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            match escape_at(bytes, i) {
                Some(decoded) if !decodes(decoded) && is_upper_hex(bytes, i) => i += 3,
                _ => return Some(i),
            }
        } else if keeps_literal(b) {
            i += 1;
        } else {
            return Some(i);
        }
    }
    None
}

/// Appends the canonical form of the token at `bytes[i]`; returns how many input bytes it
/// used (1, or 3 for a valid escape).
fn push_canonical(bytes: &[u8], i: usize, out: &mut String) -> usize {
    let b = bytes[i];
    if b == b'%' {
        match escape_at(bytes, i) {
            Some(decoded) if decodes(decoded) => {
                out.push(char::from(decoded));
                3
            }
            Some(decoded) => {
                push_escape(decoded, out);
                3
            }
            // A stray `%` is itself encoded, so the result is a well-formed path.
            None => {
                push_escape(b'%', out);
                1
            }
        }
    } else if keeps_literal(b) {
        out.push(char::from(b));
        1
    } else {
        push_escape(b, out);
        1
    }
}

fn push_escape(byte: u8, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0x0f)]));
}

/// The byte `%XY` at `bytes[i]` stands for, if `XY` are two hex digits.
fn escape_at(bytes: &[u8], i: usize) -> Option<u8> {
    let high = hex_value(*bytes.get(i + 1)?)?;
    let low = hex_value(*bytes.get(i + 2)?)?;
    Some((high << 4) | low)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_upper_hex(bytes: &[u8], i: usize) -> bool {
    bytes[i + 1..i + 3].iter().all(|b| !b.is_ascii_lowercase())
}

/// RFC 3986 `unreserved`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Escapes of these are written as the character: unreserved (RFC 3986 6.2.2.2), and the
/// other `pchar`s the router decodes (every sub-delim but `+`, and `:` `@`).
fn decodes(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b',' | b';' | b'=' | b':' | b'@'
        )
}

/// Literal characters that stay as they are: what [`decodes`] produces, plus `+` and `/`
/// (whose escapes the router keeps apart from them).
fn keeps_literal(b: u8) -> bool {
    decodes(b) || matches!(b, b'+' | b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(path: &str) -> String {
        canonical_path(path).into_owned()
    }

    #[test]
    fn escapes_of_unreserved_characters_are_decoded_in_either_hex_case() {
        for spelling in [
            "/login",
            "/%6cogin",
            "/%6Cogin",
            "/logi%6e",
            "/%6C%6F%67%69%6E",
        ] {
            assert_eq!(canon(spelling), "/login", "{spelling}");
        }
        assert_eq!(canon("/%61dmin"), "/admin");
        assert_eq!(canon("/a%2D%2e%5F%7e"), "/a-._~");
    }

    #[test]
    fn other_escapes_keep_their_meaning_with_upper_case_hex() {
        assert_eq!(canon("/login%2f"), "/login%2F");
        assert_eq!(canon("/a%2bb%25c"), "/a%2Bb%25c");
        assert_eq!(canon("/caf%c3%a9"), "/caf%C3%A9");
        assert_eq!(canon("/a%20b%3f%23"), "/a%20b%3F%23");
        assert_eq!(canon("/nul%00"), "/nul%00");
    }

    #[test]
    fn sub_delimiters_are_one_path_whether_escaped_or_not_as_the_router_sees_them() {
        assert_eq!(canon("/a%3Bx%3d1%40b%3a"), "/a;x=1@b:");
        assert_eq!(canon("/login;x"), "/login;x");
        assert_eq!(canon("/a{b}"), "/a%7Bb%7D");
        assert_eq!(canon("/a%7bb%7d"), "/a%7Bb%7D");
        assert_eq!(canon("/a\"|\\^[]"), "/a%22%7C%5C%5E%5B%5D");
        assert_eq!(canon("/café"), "/caf%C3%A9");
        assert_eq!(canon("/a b"), "/a%20b");
    }

    #[test]
    fn what_the_router_keeps_apart_stays_apart() {
        assert_eq!(canon("/Login"), "/Login");
        assert_eq!(canon("/login/"), "/login/");
        assert_eq!(canon("//login"), "//login");
        assert_eq!(canon("/./login"), "/./login");
        assert_eq!(canon("/%2e/login"), "/./login");
        assert_eq!(canon("/a/../login"), "/a/../login");
        assert_eq!(canon("/a+b"), "/a+b");
        assert_ne!(canon("/a+b"), canon("/a%2Bb"));
    }

    #[test]
    fn invalid_escapes_become_literal_percent_signs() {
        assert_eq!(canon("/%zz"), "/%25zz");
        assert_eq!(canon("/login%4"), "/login%254");
        assert_eq!(canon("/login%"), "/login%25");
        assert_eq!(canon("%"), "%25");
        assert_eq!(canon("/%%41"), "/%25A");
        assert_eq!(canon("/%4%41"), "/%254A");
        assert_eq!(canon(""), "");
    }

    #[test]
    fn a_canonical_path_is_borrowed_and_anything_else_owned() {
        for path in ["/", "/login", "/items/42", "/a%2Fb", "/a%C3%A9", "/a;b=c+d"] {
            assert!(
                matches!(canonical_path(path), Cow::Borrowed(_)),
                "{path} needs no change"
            );
        }
        for path in ["/%6cogin", "/a%2fb", "/a{b", "/%zz"] {
            assert!(
                matches!(canonical_path(path), Cow::Owned(_)),
                "{path} changes"
            );
        }
    }

    /// Paths as a client may send them: any ASCII, valid and broken escapes, some UTF-8.
    fn any_path() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::string::string_regex("(/|[ -~]|%[0-9a-fA-F]{2}|%[0-9a-fA-F]?|é)*")
            .unwrap_or_else(|error| panic!("{error}"))
    }

    proptest::proptest! {
        #[test]
        fn canonical_twice_is_canonical_once(path in any_path()) {
            let once = canon(&path);
            proptest::prop_assert_eq!(canonical_path(&once), Cow::Borrowed(once.as_str()));
        }

        #[test]
        fn the_result_is_ascii_with_only_valid_upper_case_escapes(path in any_path()) {
            let out = canon(&path);
            let bytes = out.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%' {
                    let decoded = escape_at(bytes, i);
                    proptest::prop_assert!(decoded.is_some_and(|b| !decodes(b)), "{out}");
                    proptest::prop_assert!(is_upper_hex(bytes, i), "{out}");
                    i += 3;
                } else {
                    proptest::prop_assert!(keeps_literal(bytes[i]), "{out}");
                    i += 1;
                }
            }
        }

        /// Any character but `%`, `/` and `+` may be written as its escape, hex in either
        /// case: the router decodes them all, so all spellings must be one path.
        #[test]
        fn every_escaping_of_a_path_has_the_same_canonical_form(
            path in "(/|[!-$&-~])*",
            choices in proptest::collection::vec(0u8..3, 0..200),
        ) {
            let mut respelled = String::new();
            for (i, c) in path.chars().enumerate() {
                let choice = choices.get(i).copied().unwrap_or(0);
                if matches!(c, '%' | '/' | '+') || choice == 0 {
                    respelled.push(c);
                } else if choice == 1 {
                    respelled.push_str(&format!("%{:02X}", c as u32));
                } else {
                    respelled.push_str(&format!("%{:02x}", c as u32));
                }
            }
            proptest::prop_assert_eq!(canon(&path), canon(&respelled));
        }
    }
}
