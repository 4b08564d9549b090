"""schemathesis hooks for scripts/api-contract.sh.

The OpenAPI document states every rule JSON Schema can state (patterns, formats, enums,
bounds); a few of the admin API's rules relate two values, or a value to the server's own
state, which no schema can say. The document says them in words, and the API refuses a
request that breaks one with 400, as it must. So that schemathesis's check "valid data is
accepted" still tests everything else, the schema-valid requests it generates (positive
mode only) are brought within those rules here:

- a network's host bits must be zero (`203.0.113.0/24`, not `203.0.113.7/24`);
- a block may not cover everyone or a safelisted address (the script safelists loopback),
  nor be wider than an IPv4 /16 or an IPv6 /32 without `allow_wide` (the blocklist
  service's policy, stated in the 400 answer's description);
- `since` must be earlier than `until`, and for `/stats`, `/addresses/{ip}` and
  `/countries` at most 90 days earlier (with `until` defaulting to now);
- a chart's range may have at most 1,500 buckets of the `bucket` asked for (a forced
  `bucket=minute` over two days is refused: the bucket is then dropped, letting the
  server choose);
- `/logs` takes `ip` or `network`, not both (the network is dropped);
- a `cursor` is valid only as the server issued it (`next_cursor`), so a made-up one is
  dropped.

Requests in negative mode are left exactly as generated: each must be refused.
"""

import ipaddress
from datetime import datetime, timedelta, timezone

import schemathesis

MAX_RANGE = timedelta(days=90)
MAX_BUCKETS = 1500
BUCKET_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
# The default range of each chart when `since` is absent.
DEFAULT_RANGE = {"/api/v1/stats": timedelta(hours=1), "/api/v1/addresses/{ip}": timedelta(hours=24)}


def _time(text):
    try:
        parsed = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo is not None else None


def _zero_host_bits(text):
    if not isinstance(text, str) or "/" not in text:
        return text
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        return text


# What scripts/api-contract.sh puts in IPTRACK_SAFELIST, and the IPv4-mapped range the
# policy reads as IPv4 (a block there means an IPv4 block, and all of it means everyone).
_SAFELISTED = [ipaddress.ip_network(n) for n in ("127.0.0.1/32", "::1/128", "::ffff:127.0.0.1/128")]
_IPV4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
_WIDEST = {4: 16, 6: 32}


def _allowed_block(text):
    """A schema-valid block target the policy refuses, replaced by one of the same family
    that it accepts; any other value unchanged."""
    if not isinstance(text, str):
        return text
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return text
    if net.version == 6 and net.overlaps(_IPV4_MAPPED):
        return "2001:db8::/48"
    if any(net.version == s.version and net.overlaps(s) for s in _SAFELISTED):
        return "203.0.113.0/24" if net.version == 4 else "2001:db8::/48"
    if net.prefixlen < _WIDEST[net.version]:
        net = ipaddress.ip_network(f"{net.network_address}/{_WIDEST[net.version]}", strict=False)
        return str(net)
    return text


def _order_range(query, max_range=None, default_until=None):
    since = _time(query.get("since"))
    until = _time(query.get("until")) if "until" in query else default_until
    if since is None or until is None:
        return
    if since < until and (max_range is None or until - since <= max_range):
        return
    try:
        query["until"] = (since + timedelta(hours=1)).isoformat()
    except OverflowError:
        query.pop("since")


def _fit_buckets(query, default_range):
    """Drops a forced `bucket` that would cut the range into more than MAX_BUCKETS."""
    size = BUCKET_SECONDS.get(query.get("bucket"))
    if size is None:
        return
    until = _time(query.get("until")) if "until" in query else datetime.now(timezone.utc)
    if until is None:
        return
    since = _time(query.get("since")) if "since" in query else None
    try:
        if since is None:
            since = until - default_range
        start = since.timestamp()
        count = -(-(until.timestamp() - (start - start % size)) // size)
    except (OverflowError, ValueError):
        return
    if count > MAX_BUCKETS:
        query.pop("bucket")


@schemathesis.hook
def map_case(context, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return case
    path = case.operation.path
    method = case.operation.method.upper()
    if path == "/api/v1/blocked":
        if method == "POST" and isinstance(case.body, dict):
            case.body["address"] = _allowed_block(_zero_host_bits(case.body.get("address")))
        if method == "DELETE" and isinstance(case.query, dict):
            case.query["address"] = _zero_host_bits(case.query.get("address"))
    elif path in ("/api/v1/logs", "/api/v1/suspicious") and isinstance(case.query, dict):
        _order_range(case.query)
        case.query.pop("cursor", None)
        if "network" in case.query:
            case.query["network"] = _zero_host_bits(case.query["network"])
            if "ip" in case.query:
                case.query.pop("network")
    elif path in ("/api/v1/stats", "/api/v1/addresses/{ip}", "/api/v1/countries") and isinstance(
        case.query, dict
    ):
        _order_range(
            case.query,
            max_range=MAX_RANGE,
            default_until=datetime.now(timezone.utc),
        )
        if path in DEFAULT_RANGE:
            _fit_buckets(case.query, DEFAULT_RANGE[path])
    return case
