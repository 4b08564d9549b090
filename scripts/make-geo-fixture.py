"""Writes tests/fixtures/geo-city.mmdb: a tiny MaxMind-format city database for the tests.

The dashboard's browser tests (tests/tests/e2e/dashboard_views.rs) run the worker with
IPTRACK_GEO_PROVIDER=mmdb and IPTRACK_GEO_MMDB=tests/fixtures/geo-city.mmdb, so their
traffic is located the way a deployment's is: by the mmdb provider (worker/src/geo/mmdb.rs)
reading a file, not by rows written with a country.

Records use the layout of DB-IP's own City Lite files (GeoIP2-compatible): `city.names.en`,
`continent`, `country.iso_code`, `country.names.en`, `location`. The provider reads
`country.iso_code`, `country.names.en` and `city.names.en`.

One IPv6 file (ip_version 6) holds both families: IPv4 networks sit in the IPv4 subtree
(::/96) that readers use for IPv4 addresses, so IPTRACK_GEO_MMDB names this one file.

Which addresses map where (the tests' addresses in brackets):

    81.2.69.0/24        GB United Kingdom, London   [81.2.69.142, as in MaxMind's test data]
    90.84.12.0/24       FR France, Paris            [90.84.12.8, 90.84.12.77]
    85.214.132.0/24     DE Germany, Berlin          [85.214.132.50]
    2a01:238:20a::/48   DE Germany, Berlin          [2a01:238:20a:202::50]
    133.242.0.0/16      JP Japan, Tokyo             [133.242.0.9]

Every other address is not found. The documentation ranges (192.0.2.0/24, 198.51.100.0/24,
203.0.113.0/24, 2001:db8::/32) cannot stand in: the worker never looks up an address that
is not public (worker/src/geo/mod.rs, `is_public`), so the tests keep them for traffic that
stays unlocated (2001:db8::5) and use the public networks above for located traffic. Only
this file maps them; the real owners of these networks play no part.

Regenerate (needs PyPI's mmdb-writer, which brings netaddr):

    python3 -m venv /tmp/geo-venv && /tmp/geo-venv/bin/pip install mmdb-writer
    /tmp/geo-venv/bin/python scripts/make-geo-fixture.py tests/fixtures/geo-city.mmdb

and commit the file (about 2 KB). The output is the same for the same input.
"""
import sys
import time

from mmdb_writer import MMDBWriter, MmdbF64
from netaddr import IPSet

EUROPE = {"code": "EU", "names": {"en": "Europe"}}
ASIA = {"code": "AS", "names": {"en": "Asia"}}


def city(name, code, country, continent, latitude, longitude):
    """One record, in DB-IP City Lite's layout."""
    return {
        "city": {"names": {"en": name}},
        "continent": continent,
        "country": {"iso_code": code, "names": {"en": country}},
        "location": {"latitude": MmdbF64(latitude), "longitude": MmdbF64(longitude)},
    }


LONDON = city("London", "GB", "United Kingdom", EUROPE, 51.5085, -0.1257)
PARIS = city("Paris", "FR", "France", EUROPE, 48.8534, 2.3488)
BERLIN = city("Berlin", "DE", "Germany", EUROPE, 52.5244, 13.4105)
TOKYO = city("Tokyo", "JP", "Japan", ASIA, 35.6895, 139.6917)

NETWORKS = [
    ("81.2.69.0/24", LONDON),
    ("90.84.12.0/24", PARIS),
    ("85.214.132.0/24", BERLIN),
    ("2a01:238:20a::/48", BERLIN),
    ("133.242.0.0/16", TOKYO),
]


# mmdb-writer stamps the metadata with the time of writing; a fixed stamp keeps the
# committed file unchanged when nothing else changed (2026-12-01T00:00:00Z).
BUILD_EPOCH = 1796083200


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make-geo-fixture.py OUTPUT.mmdb")
    time.time = lambda: BUILD_EPOCH
    writer = MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type="DBIP-City-Lite",
        languages=["en"],
        description="iptrack test fixture (scripts/make-geo-fixture.py)",
    )
    for network, record in NETWORKS:
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(sys.argv[1])


if __name__ == "__main__":
    main()
