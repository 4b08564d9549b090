#!/usr/bin/env bash
# The admin API against its own OpenAPI document, with schemathesis (a property-based API
# fuzzer from PyPI): `schemathesis run <document> --checks all` with the admin token,
# against the real iptrack-web binary (and a worker, so the logs and statistics it serves
# hold rows), once on SQLite and once on PostgreSQL, each on a fresh database.
#
# Fails on any failed check and on any warning schemathesis prints (a "mostly rejected"
# operation among them: a document looser than the API). Needs the binaries built
# (`cargo build --workspace --bins`), Redis and PostgreSQL running as for the tests, and
# python3 with venv. schemathesis is installed into target/ on first use and reused.
#
# Environment: IPTRACK_CONTRACT_MAX_EXAMPLES (test cases per operation and phase, default
# 60), IPTRACK_TEST_REDIS_URL and IPTRACK_TEST_POSTGRES_URL (as for the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

# Pinned: the CLI's flags and checks changed a lot between 3.x and 4.x, and keep growing.
SCHEMATHESIS_VERSION=4.32.5
VENV="target/schemathesis-$SCHEMATHESIS_VERSION"
BIN=target/debug
MAX_EXAMPLES=${IPTRACK_CONTRACT_MAX_EXAMPLES:-60}
REDIS_URL=${IPTRACK_TEST_REDIS_URL:-redis://127.0.0.1:6379}
POSTGRES_URL=${IPTRACK_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432}
TOKEN="contract-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"

log() { printf '== api contract: %s\n' "$*"; }

for bin in iptrack-web iptrack-worker; do
  [[ -x "$BIN/$bin" ]] || { echo "$BIN/$bin missing: run cargo build --workspace --bins" >&2; exit 2; }
done

if [[ ! -x "$VENV/bin/schemathesis" ]]; then
  log "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

work=$(mktemp -d)
pids=()
database=""
prefix=""
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
  if [[ -n "$database" ]]; then
    psql "$POSTGRES_URL/postgres" -qAtc "DROP DATABASE IF EXISTS \"$database\" WITH (FORCE)" >/dev/null 2>&1 || true
    database=""
  fi
  if [[ -n "$prefix" ]]; then
    redis-cli -u "$REDIS_URL" --scan --pattern "$prefix*" | xargs -r redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
    prefix=""
  fi
}
trap 'cleanup; rm -rf "$work"' EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_http() { # URL
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "$1 did not answer" >&2
  return 1
}

run_against() { # BACKEND
  local backend=$1 db_url port base
  prefix="iptrack-contract-$$-$backend"
  case $backend in
    sqlite) db_url="sqlite://$work/contract.db?mode=rwc" ;;
    postgres)
      database="iptrack_contract_$$"
      psql "$POSTGRES_URL/postgres" -qAtc "CREATE DATABASE \"$database\"" >/dev/null
      db_url="$POSTGRES_URL/$database"
      ;;
  esac
  port=$(free_port)
  base="http://127.0.0.1:$port"
  # schemathesis blocks whatever networks it makes up, 0.0.0.0/0 included; the safelist
  # keeps it (on loopback) able to reach the API it is testing.
  export DATABASE_URL="$db_url" REDIS_URL IPTRACK_REDIS_PREFIX="$prefix" \
    IPTRACK_BIND="127.0.0.1:$port" IPTRACK_ADMIN_TOKEN="$TOKEN" RUST_LOG=warn \
    IPTRACK_SAFELIST="127.0.0.1/32,::1/128"
  "$BIN/iptrack-web" --migrate >"$work/web-$backend.log" 2>&1 &
  pids+=($!)
  wait_for_http "$base/healthz"
  "$BIN/iptrack-worker" >"$work/worker-$backend.log" 2>&1 &
  pids+=($!)
  # A little traffic, so the logs and statistics have rows to describe.
  for path in / /login /admin /nothing /login?next=%2Fadmin; do
    curl -s -o /dev/null "$base$path"
  done
  for _ in $(seq 1 50); do
    [[ $(curl -fsS -H "Authorization: Bearer $TOKEN" "$base/api/v1/logs?limit=1" | tr -d ' \n') == '{"items":[]'* ]] || break
    sleep 0.2
  done

  # GET /events (stream_events) is left out: a Server-Sent Events stream stays open by
  # design, so every call would end in schemathesis's request timeout. Its token check,
  # its frames and its end at shutdown are tested end to end (tests/e2e/live_events.rs).
  log "schemathesis against $backend ($base, $MAX_EXAMPLES examples per operation)"
  local status=0
  # Run from the scratch directory: schemathesis keeps its replay files in the current one.
  (cd "$work" && SCHEMATHESIS_HOOKS=api_contract_hooks PYTHONPATH="$repo/scripts" PYTHONDONTWRITEBYTECODE=1 \
    "$repo/$VENV/bin/schemathesis" --config-file "$repo/scripts/schemathesis.toml" run "$base/api/v1/openapi.json" \
    --checks all -H "Authorization: Bearer $TOKEN" --max-examples "$MAX_EXAMPLES" \
    --exclude-operation-id stream_events \
    --seed "${IPTRACK_CONTRACT_SEED:-$RANDOM}" --generation-database none --no-color) \
    >"$work/schemathesis-$backend.log" 2>&1 || status=$?
  cat "$work/schemathesis-$backend.log"
  if grep -qiE 'mostly rejected|warning' "$work/schemathesis-$backend.log"; then
    echo "schemathesis printed a warning on $backend" >&2
    status=1
  fi
  if grep -q 'panicked' "$work/web-$backend.log"; then
    echo "iptrack-web panicked on $backend:" >&2
    grep -A3 'panicked' "$work/web-$backend.log" | head -20 >&2
    status=1
  fi
  cleanup
  return "$status"
}

failed=()
for backend in sqlite postgres; do
  run_against "$backend" || failed+=("$backend")
done

if ((${#failed[@]})); then
  echo "API CONTRACT: FAIL (${failed[*]})"
  exit 1
fi
echo "API CONTRACT: PASS (SQLite and PostgreSQL)"
