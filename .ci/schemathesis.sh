#!/usr/bin/env bash
# Property-based API testing of the running service against its own OpenAPI document, with
# schemathesis: every operation gets its examples, the coverage phase's boundary and negative
# cases, and a bounded amount of fuzzing, checked with schemathesis's default checks (no 5xx,
# only documented statuses, content types, headers and bodies matching the spec...).
#
# It builds target/debug/tenant-migrator, serves it on the embedded SQLite default in a fresh
# temporary directory on a free loopback port, creates an admin, logs in, and points
# schemathesis at http://127.0.0.1:PORT/openapi.json with the admin's token. Only loopback
# traffic; the server is stopped on exit. Exit status: schemathesis's (non-zero on any failure).
#
# Environment:
#   SCHEMATHESIS_MAX_TIME   time budget of the run in seconds (default 180)
#   SCHEMATHESIS_SEED       seed for a reproducible run (default: random, printed by schemathesis)
#   SCHEMATHESIS_VENV       where the virtualenv lives (default: under XDG_CACHE_HOME, reused)
#   SCHEMATHESIS_CONFIG     schemathesis.toml to use (default: .ci/schemathesis.toml)
#   SCHEMATHESIS_REPORT_DIR where the JUnit report and the failing cases' cassette go
#                           (default: a temporary directory, printed; kept when the run fails)
#   SKIP_BUILD=1            use the binary already in target/debug
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# The pinned version (and, in schemathesis-constraints.txt, every dependency's).
SCHEMATHESIS_VERSION=4.32.5
max_time=${SCHEMATHESIS_MAX_TIME:-180}
venv=${SCHEMATHESIS_VENV:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/tenant-migrator/venv}
config=${SCHEMATHESIS_CONFIG:-$root/.ci/schemathesis.toml}

log() { printf '== schemathesis: %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 2; }

# --- the tool -------------------------------------------------------------------------------
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -qx "schemathesis, version $SCHEMATHESIS_VERSION"; then
  log "installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  python3 -m venv --clear "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -c .ci/schemathesis-constraints.txt "schemathesis==$SCHEMATHESIS_VERSION" \
    || die "could not install schemathesis $SCHEMATHESIS_VERSION"
fi
"$venv/bin/schemathesis" --version

# --- the service ----------------------------------------------------------------------------
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "cargo build --locked"
  cargo build --locked --quiet
fi
bin=$root/target/debug/tenant-migrator
[ -x "$bin" ] || die "$bin is missing"

work=$(mktemp -d "${TMPDIR:-/tmp}/tenant-migrator-schemathesis.XXXXXX")
server_pid=
keep_work=0
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  if [ "$keep_work" = 1 ]; then
    log "kept $work (server.log, reports)"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
api=http://127.0.0.1:$port
secret=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
email=schemathesis-admin@example.com

# The service on its embedded SQLite default, in the temporary directory (also its working
# directory, so no .env of the checkout is read), with none of the caller's database settings.
tm() {
  (cd "$work" && env -u DATABASE_URL -u PUBLIC_DATABASE_URL -u TENANT_URL_TEMPLATE \
    -u MIGRATIONS_DIR -u REDIS_URL -u CATALOG_SCHEMA -u METRICS_TOKEN -u CORS_ORIGINS \
    -u JWT_ISSUER -u JWT_AUDIENCE -u JWT_TTL \
    DATA_DIR="$work/data" SECRET_KEY="$secret" BIND_ADDR="127.0.0.1:$port" \
    RUST_LOG="${RUST_LOG:-info}" "$bin" "$@")
}

log "creating an admin"
printf %s "$password" | tm create-admin "$email" --role admin >"$work/create-admin.log" 2>&1 \
  || { cat "$work/create-admin.log" >&2; die "create-admin failed"; }

log "starting the service on $api"
tm serve >"$work/server.log" 2>&1 &
server_pid=$!
ready=0
for _ in $(seq 1 120); do
  if curl -sf "$api/readyz" >/dev/null 2>&1; then ready=1; break; fi
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.5
done
if [ "$ready" != 1 ]; then
  tail -n 50 "$work/server.log" >&2
  die "the service did not become ready"
fi

login_body=$(python3 -c 'import json, sys; print(json.dumps({"email": sys.argv[1], "password": sys.argv[2]}))' "$email" "$password")
token=$(curl -sf -X POST "$api/auth/login" -H 'content-type: application/json' -d "$login_body" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])') \
  || { tail -n 50 "$work/server.log" >&2; die "login failed"; }

# --- the run --------------------------------------------------------------------------------
# One worker: with two, both threads' first Hypothesis lambda descriptions can run ast.parse at
# the same moment, and CPython 3.11 (the machine's python3) then fails one of them with
# "SystemError: AST constructor recursion depth mismatch" (its AST recursion counter is shared
# between threads) — a runtime error of the tool, not of the service, that fails the run.
reports=${SCHEMATHESIS_REPORT_DIR:-$work/reports}
mkdir -p "$reports"
reports=$(cd "$reports" && pwd)
seed_args=()
[ -n "${SCHEMATHESIS_SEED:-}" ] && seed_args=(--seed "$SCHEMATHESIS_SEED")
log "running for at most ${max_time}s (examples, coverage, fuzzing)"
status=0
# From the temporary directory: schemathesis keeps its crash cache (for `st replay`) in
# .schemathesis/ under the working directory.
(cd "$work" && "$venv/bin/schemathesis" --config-file "$config" run "$api/openapi.json" \
  --header "Authorization: Bearer $token" \
  --phases examples,coverage,fuzzing \
  --max-time "$max_time" \
  --request-timeout 30 \
  --workers 1 \
  --generation-database none \
  --report junit,vcr --report-dir "$reports" \
  --no-color \
  "${seed_args[@]}") || status=$?

# The admin whose token the run used must still work: a run that locked itself out (disabled
# or demoted that admin, revoked its token) would have tested nothing after that point.
me=$(curl -s -o /dev/null -w '%{http_code}' "$api/auth/me" -H "Authorization: Bearer $token" || true)
if [ "$me" != 200 ]; then
  echo "error: the run's admin token no longer works after the run (GET /auth/me: $me)" >&2
  [ "$status" = 0 ] && status=1
fi
if grep -q 'panicked' "$work/server.log"; then
  echo "error: the service panicked during the run:" >&2
  grep -n -A5 'panicked' "$work/server.log" | head -n 40 >&2
  [ "$status" = 0 ] && status=1
fi
if [ "$status" != 0 ]; then
  keep_work=1
  log "failed (exit $status); reports in $reports"
  exit "$status"
fi
log "passed"
