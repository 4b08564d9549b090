//! What the OpenAPI document says a text parameter accepts, and the check that holds the
//! API to it.
//!
//! An address or network is described by a regular expression, and the handlers test
//! their input against that same expression before parsing it: what the document calls
//! valid is accepted and what it calls invalid is refused, exactly, rather than by two
//! grammars that agree most of the time (the parsers behind `parse_block_target` also
//! take forms the pattern leaves out, such as octets with leading zeros in a network, or
//! `::` standing for no group at all; a client validating against the document would
//! refuse those, so the API refuses them too).
//!
//! The expressions use only what ECMA-262 (the dialect of JSON Schema's `pattern`), Python
//! (schemathesis and most validators) and the `regex` crate read alike: `[0-9]` rather
//! than `\d`, which is not ASCII-only everywhere.

use std::sync::LazyLock;

use regex::Regex;
use utoipa::openapi::{
    Object, ObjectBuilder, Type,
    schema::{KnownFormat, SchemaFormat, SchemaType},
};

use super::ApiError;

/// A decimal octet, 0 to 255, without leading zeros (as `Ipv4Addr`'s parser takes it).
const OCTET: &str = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])";
/// One IPv6 group: one to four hex digits.
const GROUP: &str = "[0-9A-Fa-f]{1,4}";
/// IPv4 prefix lengths 0 to 32, IPv6 0 to 128, without leading zeros.
const V4_PREFIX: &str = "(?:3[0-2]|[12][0-9]|[0-9])";
const V6_PREFIX: &str = "(?:12[0-8]|1[01][0-9]|[1-9][0-9]|[0-9])";

fn ipv4() -> String {
    format!("{OCTET}(?:\\.{OCTET}){{3}}")
}

/// The IPv6 text forms `Ipv6Addr`'s parser takes: eight groups, six groups and a dotted
/// IPv4 tail, or `::` standing for at least one zero group with at most seven groups
/// (an IPv4 tail counting as two) around it.
fn ipv6() -> String {
    let v4 = ipv4();
    let mut forms = vec![
        format!("(?:{GROUP}:){{7}}{GROUP}"),
        format!("(?:{GROUP}:){{6}}{v4}"),
    ];
    for head in 0..=7usize {
        let head_text = match head {
            0 => String::new(),
            n => format!("{GROUP}(?::{GROUP}){{{}}}", n - 1),
        };
        let room = 7 - head;
        let mut tails = Vec::new();
        if room >= 1 {
            tails.push(format!("{GROUP}(?::{GROUP}){{0,{}}}", room - 1));
        }
        if room >= 2 {
            tails.push(format!("(?:{GROUP}:){{0,{}}}{v4}", room - 2));
        }
        let tail_text = if tails.is_empty() {
            String::new()
        } else {
            format!("(?:{})?", tails.join("|"))
        };
        forms.push(format!("{head_text}::{tail_text}"));
    }
    format!("(?:{})", forms.join("|"))
}

/// One IP address, IPv4 or IPv6.
pub(super) static IP_ADDRESS: LazyLock<String> =
    LazyLock::new(|| format!("^(?:{}|{})$", ipv4(), ipv6()));

/// An address, or a network in CIDR form with the prefix length its family allows.
pub(super) static BLOCK_TARGET: LazyLock<String> = LazyLock::new(|| {
    format!(
        "^(?:{v4}(?:/{V4_PREFIX})?|{v6}(?:/{V6_PREFIX})?)$",
        v4 = ipv4(),
        v6 = ipv6()
    )
});

/// A network in CIDR form: a prefix length is required (an address alone is `ip`'s).
pub(super) static NETWORK: LazyLock<String> = LazyLock::new(|| {
    format!(
        "^(?:{v4}/{V4_PREFIX}|{v6}/{V6_PREFIX})$",
        v4 = ipv4(),
        v6 = ipv6()
    )
});

/// An HTTP method as the logs filter takes it: letters, any case.
pub(super) const METHOD: &str = "^[A-Za-z]{1,16}$";

/// A country filter: an ISO 3166-1 alpha-2 code in any case, or `unknown`.
pub(super) const COUNTRY: &str = "^(?:[A-Za-z]{2}|unknown)$";

/// A block's source as `blocked_ip.source` holds it.
pub(super) const BLOCK_SOURCE: &str = "^(?:manual|(?:rule|feed):[A-Za-z0-9_.-]{1,64})$";

/// Text that PostgreSQL's `text` can hold: anything but NUL (see `params::storable_text`).
pub(super) const NO_NUL: &str = "^[^\\x00]*$";

static IP_ADDRESS_RE: LazyLock<Option<Regex>> = LazyLock::new(|| compile(&IP_ADDRESS));
static BLOCK_TARGET_RE: LazyLock<Option<Regex>> = LazyLock::new(|| compile(&BLOCK_TARGET));
static BLOCK_SOURCE_RE: LazyLock<Option<Regex>> = LazyLock::new(|| compile(BLOCK_SOURCE));
static NETWORK_RE: LazyLock<Option<Regex>> = LazyLock::new(|| compile(&NETWORK));
static METHOD_RE: LazyLock<Option<Regex>> = LazyLock::new(|| compile(METHOD));
static COUNTRY_RE: LazyLock<Option<Regex>> = LazyLock::new(|| compile(COUNTRY));

fn compile(pattern: &str) -> Option<Regex> {
    Regex::new(pattern)
        .inspect_err(|error| tracing::error!(%error, "an address pattern does not compile"))
        .ok()
}

/// Refuses `text` unless it is what the document's pattern describes. (Should a pattern
/// ever fail to compile, every value is refused rather than none checked.)
fn conforms(
    pattern: &LazyLock<Option<Regex>>,
    name: &str,
    text: &str,
    what: &str,
) -> Result<(), ApiError> {
    let compiled: &Option<Regex> = pattern;
    match compiled {
        Some(re) if re.is_match(text) => Ok(()),
        _ => Err(ApiError::BadRequest(format!(
            "{name}: {text:?} is not {what}"
        ))),
    }
}

pub(super) fn check_ip_address(name: &str, text: &str) -> Result<(), ApiError> {
    conforms(&IP_ADDRESS_RE, name, text, "an IP address")
}

pub(super) fn check_block_target(name: &str, text: &str) -> Result<(), ApiError> {
    conforms(
        &BLOCK_TARGET_RE,
        name,
        text,
        "an IP address or a CIDR network such as 203.0.113.0/24",
    )
}

pub(super) fn check_block_source(name: &str, text: &str) -> Result<(), ApiError> {
    conforms(
        &BLOCK_SOURCE_RE,
        name,
        text,
        "a source: manual, rule:NAME or feed:NAME",
    )
}

pub(super) fn check_network(name: &str, text: &str) -> Result<(), ApiError> {
    conforms(
        &NETWORK_RE,
        name,
        text,
        "a network in CIDR form such as 203.0.113.0/24 or 2001:db8::/32",
    )
}

pub(super) fn check_method(name: &str, text: &str) -> Result<(), ApiError> {
    conforms(&METHOD_RE, name, text, "an HTTP method: 1 to 16 letters")
}

pub(super) fn check_country(name: &str, text: &str) -> Result<(), ApiError> {
    conforms(
        &COUNTRY_RE,
        name,
        text,
        "a two-letter country code (ISO 3166-1 alpha-2) or unknown",
    )
}

/// Schema of a `network` parameter.
pub(super) fn network() -> Object {
    string_with_pattern(
        &NETWORK,
        "A network in CIDR form with its host bits zero (203.0.113.0/24, 2001:db8::/32)",
    )
    .build()
}

/// Schema of a `method` parameter.
pub(super) fn method() -> Object {
    string_with_pattern(METHOD, "An HTTP method, any case (GET, post)").build()
}

/// Schema of a `country` parameter.
pub(super) fn country() -> Object {
    string_with_pattern(
        COUNTRY,
        "An ISO 3166-1 alpha-2 code, any case (GB, de), or `unknown` for rows with no country",
    )
    .build()
}

/// Schema of a parameter taking one of `names`.
pub(super) fn one_of(names: &[&str], default: Option<&str>) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(names.iter().copied()))
        .default(default.map(Into::into))
        .build()
}

/// Schema of a `source` parameter.
pub(super) fn block_source() -> Object {
    string_with_pattern(
        BLOCK_SOURCE,
        "Who made the block: manual, rule:NAME or feed:NAME",
    )
    .build()
}

fn string_with_pattern(pattern: &str, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .description(Some(description))
}

/// Schema of an `ip` parameter.
pub(super) fn ip_address() -> Object {
    string_with_pattern(&IP_ADDRESS, "An IPv4 or IPv6 address").build()
}

/// Schema of a block's `address`.
pub(super) fn block_target() -> Object {
    string_with_pattern(
        &BLOCK_TARGET,
        "An IPv4 or IPv6 address, or a network in CIDR form with its host bits zero \
         (203.0.113.0/24, 2001:db8::/32)",
    )
    .build()
}

/// Schema of free text: any characters but NUL.
pub(super) fn storable_text() -> Object {
    string_with_pattern(NO_NUL, "Any text without a NUL character").build()
}

/// Schema of free text of at most `max_chars` characters (JSON Schema counts characters,
/// as `str::chars` does), without NUL.
pub(super) fn bounded_text(max_chars: usize) -> Object {
    string_with_pattern(NO_NUL, "Any text without a NUL character")
        .max_length(Some(max_chars))
        .build()
}

/// Schema of a whole number in `min..=max`; `null` also allowed when `nullable` (a JSON
/// field whose `null` means the same as leaving it out).
pub(super) fn whole_number(min: u64, max: u64, default: Option<u64>, nullable: bool) -> Object {
    let kind = if nullable {
        SchemaType::from_iter([Type::Integer, Type::Null])
    } else {
        SchemaType::Type(Type::Integer)
    };
    ObjectBuilder::new()
        .schema_type(kind)
        .minimum(Some(min))
        .maximum(Some(max))
        .default(default.map(Into::into))
        .build()
}

/// Schema of a `since`/`until` parameter.
pub(super) fn date_time() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .description(Some("RFC 3339, e.g. 2026-11-21T10:00:00Z"))
        .build()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a pattern that does not compile should fail the test loudly
mod tests {
    use std::net::IpAddr;

    use super::*;

    fn matches(pattern: &str, text: &str) -> bool {
        Regex::new(pattern).unwrap().is_match(text)
    }

    /// Every form the pattern takes is one `IpAddr` parses, and the other way round.
    #[test]
    fn the_address_pattern_takes_exactly_what_the_address_parser_takes() {
        let cases = [
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "::",
            "::1",
            "1::",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7::",
            "::2:3:4:5:6:7:8",
            "1:2:3:4::5:6:7:8",
            "1:2:3:4:5:6:7:8:9",
            "::ffff:1.2.3.4",
            "::1.2.3.4",
            "1:2:3:4:5:6:1.2.3.4",
            "1:2:3:4:5::1.2.3.4",
            "1:2:3:4:5:6::1.2.3.4",
            "1.2.3.4::",
            "1.2.3.4:1::",
            "abcd:EF01::",
            "12345::",
            "fe80::1%eth0",
            ":1::",
            "1:::2",
            "1::2::3",
            "",
            " 1.2.3.4",
            "1.2.3.4 ",
        ];
        for text in cases {
            assert_eq!(
                matches(&IP_ADDRESS, text),
                text.parse::<IpAddr>().is_ok(),
                "{text:?}"
            );
        }
    }

    /// A brute-force sweep over short strings of the characters addresses are made of.
    #[test]
    fn the_address_pattern_agrees_with_the_parser_on_every_short_string() {
        let alphabet = [b'0', b'1', b'f', b':', b'.'];
        let re = Regex::new(&IP_ADDRESS).unwrap();
        let mut text = Vec::new();
        for len in 1..=8u32 {
            for mut n in 0..alphabet.len().pow(len) {
                text.clear();
                for _ in 0..len {
                    text.push(alphabet[n % alphabet.len()]);
                    n /= alphabet.len();
                }
                let s = std::str::from_utf8(&text).unwrap();
                assert_eq!(re.is_match(s), s.parse::<IpAddr>().is_ok(), "{s:?}");
            }
        }
    }

    #[test]
    fn every_network_the_pattern_takes_parses() {
        for (text, ok) in [
            ("203.0.113.0/24", true),
            ("0.0.0.0/0", true),
            ("1.2.3.4/32", true),
            ("1.2.3.4/33", false),
            ("1.2.3.0/08", false),
            ("001.2.3.0/24", false),
            ("2001:db8::/32", true),
            ("::/0", true),
            ("::1/128", true),
            ("::1/129", false),
            ("::ffff:1.2.3.0/120", true),
            ("1.2.3.4/", false),
            ("/24", false),
        ] {
            assert_eq!(matches(&BLOCK_TARGET, text), ok, "{text}");
            if ok {
                // Host bits aside, every form the pattern takes is one the parser takes.
                assert!(
                    text.parse::<ipnet::IpNet>().is_ok() || text.parse::<IpAddr>().is_ok(),
                    "{text}"
                );
            }
        }
    }
}
