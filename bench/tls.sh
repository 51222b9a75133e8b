#!/usr/bin/env bash
# TLS benchmark: does a connection over TLS cost what a plain one costs? For each server, N
# tenants are provisioned, then a no-op `upgrade-all` (connections opened, every history read,
# nothing to do) runs with the default URL (TLS when the server offers it: PostgreSQL's
# sslmode=prefer, MySQL's ssl-mode=PREFERRED) and with TLS off, alternating, best of RUNS
# each. Prints both and the ratio (target: <= 1.2x).
#   postgres: the shared server on 127.0.0.1:5432 (it must have ssl = on).
#   mysql:    a private MariaDB started here on a free port with a self-signed certificate
#             made by openssl, removed at the end (needs root: the server runs as mysql).
# Usage: bench/tls.sh [N, default 200] [--backend postgres|mysql|both] [--runs R, default 3]
# Env: BIN (a tenant-migrator binary to measure instead of building this tree's release),
#      PGDATABASE (default test).
set -euo pipefail
cd "$(dirname "$0")/.."

N=200 BACKENDS="postgres mysql" RUNS=3
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then N=$1; shift; fi
while [ $# -gt 0 ]; do
  case $1 in
    --backend) BACKENDS=$2; [ "$2" = both ] && BACKENDS="postgres mysql"; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=target/release/tenant-migrator
fi
P="bt$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
WORK=$(mktemp -d)
chmod 755 "$WORK"
NAMES=$(seq -f "${P}_%05g" 1 "$N")
export LOG_FORMAT=json RUST_LOG=warn TENANT_ENGINE_POOL_SIZE=4
unset TENANT_URL_TEMPLATE TENANT_SERVERS CATALOG_SCHEMA
export PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres PGDATABASE=${PGDATABASE:-test}

SERVER=
cleanup() {
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null || true; fi
  psql -qAt -c "SELECT nspname FROM pg_namespace WHERE nspname LIKE '${P}%'" 2>/dev/null \
    | sed 's/.*/DROP SCHEMA "&" CASCADE;/' | psql -q >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

now() { date +%s.%N; }
secs() { awk "BEGIN{printf \"%.3f\", $2 - $1}"; }
ratio() { awk "BEGIN{ if ($2 > 0) printf \"%.2f\", $1 / $2; else print \"n/a\" }"; }
min() { awk "BEGIN{ print ($1 < $2) ? $1 : $2 }"; }

# noop_run DATABASE_URL [VAR=VALUE...]: seconds of one no-op upgrade-all (checked).
noop_run() {
  local url=$1 s e; shift
  s=$(now); env DATABASE_URL="$url" "$@" "$BIN" upgrade-all --output json > "$WORK/noop.json"; e=$(now)
  python3 -c "import json; r=json.load(open('$WORK/noop.json')); assert r['skipped']==$N and r['failed']==0, (r['skipped'], r['failed'])"
  secs "$s" "$e"
}

# compare NAME TLS_URL PLAIN_URL [VAR=VALUE...]: RUNS alternating pairs, best of each.
compare() {
  local name=$1 tls_url=$2 plain_url=$3 best_tls=999999 best_plain=999999 t p i
  shift 3
  for i in $(seq 1 "$RUNS"); do
    t=$(noop_run "$tls_url" "$@"); p=$(noop_run "$plain_url" "$@")
    printf '  run %d: tls %ss, plain %ss\n' "$i" "$t" "$p"
    best_tls=$(min "$best_tls" "$t"); best_plain=$(min "$best_plain" "$p")
  done
  printf '%-10s N=%-6d tls %8ss   plain %8ss   ratio %s (target <= 1.2)\n' \
    "$name" "$N" "$best_tls" "$best_plain" "$(ratio "$best_tls" "$best_plain")" | tee -a "$WORK/summary"
}

printf 'TLS benchmark: N=%d, best of %d alternating no-op runs, %s (%s)\n' "$N" "$RUNS" "$BIN" "$(date -u +%FT%TZ)"

# ---- PostgreSQL ---------------------------------------------------------------------------
bench_postgres() {
  if [ "$(psql -qAt -c 'SHOW ssl')" != on ]; then
    echo "postgres: the server has ssl = off; nothing to compare" >&2; return 1
  fi
  local base="postgres://postgres@127.0.0.1:5432/$PGDATABASE?application_name=$P"
  local vars=(CATALOG_SCHEMA="${P}_cat")
  env DATABASE_URL="$base" "${vars[@]}" "$BIN" create $NAMES --concurrency 4 --output json > "$WORK/create.json"
  python3 -c "import json; r=json.load(open('$WORK/create.json')); assert r['failed']==0, r['failed']"
  # The default URL does use TLS: sample pg_stat_ssl while one run is in flight.
  env DATABASE_URL="$base" "${vars[@]}" "$BIN" upgrade-all --output json > /dev/null &
  local run=$! seen=0 n
  while kill -0 "$run" 2>/dev/null; do
    n=$(psql -qAt -c "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = '$P' AND s.ssl" 2>/dev/null || echo 0)
    [ "$n" -gt "$seen" ] && seen=$n
    sleep 0.01
  done
  wait "$run"
  echo "postgres: connections seen over TLS during a default-URL run: $seen"
  compare postgres "$base" "$base&sslmode=disable" "${vars[@]}"
}

# ---- MariaDB, private, with a self-signed certificate --------------------------------------
bench_mysql() {
  local dir="$WORK/mariadb" port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" > "$WORK/openssl.log" 2>&1
  chown -R mysql:mysql "$dir"
  mariadb-install-db --no-defaults --user=mysql --datadir="$dir/data" \
    --auth-root-authentication-method=normal --skip-test-db > "$WORK/install.log" 2>&1
  mariadbd --no-defaults --user=mysql --datadir="$dir/data" --port="$port" \
    --bind-address=127.0.0.1 --socket="$dir/sock" --pid-file="$dir/pid" \
    --log-error="$dir/err.log" --skip-name-resolve --skip-log-bin \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
    --ssl-cert="$dir/cert.pem" --ssl-key="$dir/key.pem" --max-connections=200 &
  SERVER=$!
  local my=(mariadb -h127.0.0.1 -P"$port" -uroot -N -B --skip-ssl)
  for _ in $(seq 1 120); do "${my[@]}" -e "SELECT 1" >/dev/null 2>&1 && break; sleep 0.5; done
  if [ "$("${my[@]}" -e "SELECT @@have_ssl")" != YES ]; then
    echo "mysql: the private server did not enable TLS (see $dir/err.log)" >&2; return 1
  fi
  # No template: the tenants live on the catalog's server, reached with the same URL options.
  local base="mysql://root@127.0.0.1:$port/${P}_cat"
  env DATABASE_URL="$base" "$BIN" create $NAMES --concurrency 4 --output json > "$WORK/create.json"
  python3 -c "import json; r=json.load(open('$WORK/create.json')); assert r['failed']==0, r['failed']"
  local before after
  before=$("${my[@]}" -e "SHOW GLOBAL STATUS LIKE 'Ssl_accepts'" | awk '{print $2}')
  noop_run "$base" > /dev/null
  after=$("${my[@]}" -e "SHOW GLOBAL STATUS LIKE 'Ssl_accepts'" | awk '{print $2}')
  echo "mysql: TLS connections accepted during a default-URL run: $((after - before))"
  compare mysql "$base" "$base?ssl-mode=disabled"
}

for b in $BACKENDS; do
  case $b in
    postgres) bench_postgres ;;
    mysql) bench_mysql ;;
    *) echo "unknown backend $b" >&2; exit 2 ;;
  esac
done
echo
cat "$WORK/summary"
