#!/usr/bin/env bash
# HTTP benchmark with wrk on loopback:
#   1. what the console's fleet view reads, with TENANTS catalog rows (default 1,000; one in
#      ten a version behind, one in a hundred failed), 64 connections for 10 s each:
#      GET /tenants?limit=50 (first page), a page from a cursor half-way, a name search, and
#      GET /fleet (counts by status and version, what needs attention)
#   2. POST /tenants one by one for 100 tenants, beside the raw single-tenant DDL time
#      (the same DDL in one plain client session, no tracking), measured in this run
# Prints req/s, p50/p99 and the server's RSS.
# Usage: [TENANTS=10000] bench/http.sh [--backend mysql|postgres|sqlite]   (needs wrk, curl)
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND=mysql
TENANTS=${TENANTS:-1000}
[ "${1:-}" = "--backend" ] && BACKEND=${2:?backend}
FLOORS=${FLOORS:-../shared/bench}
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 2; }
cargo build --release --quiet
BIN=$PWD/target/release/tenant-migrator
P="bh$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
WORK=$(mktemp -d)
PORT=$((20000 + RANDOM % 20000))
export LOG_FORMAT=json RUST_LOG=warn BIND_ADDR=127.0.0.1:$PORT SECRET_KEY=$(head -c32 /dev/urandom | od -An -tx1 | tr -d ' \n')
MY=(mariadb -h127.0.0.1 -uroot -N -B)
case $BACKEND in
  mysql) export DATABASE_URL="mysql://root@127.0.0.1:3306/${P}_cat" TENANT_URL_TEMPLATE="mysql://root@127.0.0.1:3306/{schema}" ;;
  postgres) export DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres" CATALOG_SCHEMA="${P}_cat" ;;
  sqlite) export DATABASE_URL="sqlite://$WORK/catalog.db" ;;
  *) echo "unknown backend $BACKEND" >&2; exit 2 ;;
esac
SERVER=
cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
  case $BACKEND in
    mysql) "${MY[@]}" -e "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '${P}%'" \
             | sed 's/.*/DROP DATABASE `&`;/' | "${MY[@]}" ;;
    postgres) psql -h127.0.0.1 -Upostgres -qAt -c "SELECT nspname FROM pg_namespace WHERE nspname LIKE '${P}%'" \
             | sed 's/.*/DROP SCHEMA "&" CASCADE;/' | psql -h127.0.0.1 -Upostgres -q >/dev/null 2>&1 ;;
  esac
  rm -rf "$WORK"
}
trap cleanup EXIT

printf 'admin-passphrase-for-bench' | $BIN create-admin "bench@example.com" --role operator >/dev/null
# TENANTS catalog rows (these endpoints read the catalog only), in statements of 1,000.
python3 - "$BACKEND" "$P" "$TENANTS" <<'PY' > "$WORK/rows.sql"
import sys, uuid
backend, p, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def row(i):
    status, version, error = "active", 3, "NULL"
    if i % 100 == 7:
        status, error = "failed", "'migration 3 failed: duplicate column'"
    elif i % 10 == 3:
        version = 2
    return f"('{uuid.uuid4()}', '{p}_{i:05d}', 'Salon {i}', '{status}', 'default', {version}, {error}, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
for start in range(0, n, 1000):
    rows = ",".join(row(i) for i in range(start, min(n, start + 1000)))
    print(f"INSERT INTO tenants (id, schema_name, display_name, status, server, schema_version, last_error, created_at, updated_at) VALUES {rows};")
PY
case $BACKEND in
  mysql) "${MY[@]}" "${P}_cat" < "$WORK/rows.sql" ;;
  postgres) psql -h127.0.0.1 -Upostgres -q -c "SET search_path TO ${P}_cat" -f "$WORK/rows.sql" ;;
  sqlite) sed "s/'2026-01-01 00:00:00'/'2026-01-01T00:00:00+00:00'/g" "$WORK/rows.sql" | sqlite3 "$WORK/catalog.db" ;;
esac

$BIN serve > "$WORK/server.log" 2>&1 & SERVER=$!
for _ in $(seq 100); do $BIN healthcheck && break; sleep 0.1; done
API=http://127.0.0.1:$PORT
TOKEN=$(curl -sf -X POST $API/auth/login -H 'content-type: application/json' \
  -d '{"email":"bench@example.com","password":"admin-passphrase-for-bench"}' | python3 -c 'import sys,json; print(json.load(sys.stdin)["access_token"])')

# wrk for 10 s on 64 connections against one path; prints req/s, p50, p99 and errors.
measure() {
  echo "== GET $1 (backend=$BACKEND, $TENANTS tenants, 64 connections, 10 s)"
  wrk -t2 -c64 -d10s --latency -H "authorization: Bearer $TOKEN" "$API$1" > "$WORK/wrk.txt"
  printf 'req/s %s  p50 %s  p99 %s %s\n' "$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.txt")" \
    "$(awk '$1=="50%" {print $2}' "$WORK/wrk.txt")" "$(awk '$1=="99%" {print $2}' "$WORK/wrk.txt")" \
    "$(awk '/Non-2xx|Socket errors/' "$WORK/wrk.txt")"
}
measure "/tenants?limit=50"
measure "/tenants?limit=50&cursor=${P}_$(printf %05d $((TENANTS / 2)))"
measure "/tenants?limit=50&search=${P}_0"
measure "/fleet"
printf 'server RSS %.1f MiB\n' "$(awk "BEGIN{print $(ps -o rss= -p "$SERVER")/1024}")"

echo "== POST /tenants x100, one by one"
for i in $(seq -f "%03g" 1 100); do
  curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -X POST "$API/tenants" \
    -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d "{\"schema_name\":\"${P}_n$i\"}"
done > "$WORK/post.txt"
echo "non-201 responses: $(grep -vc '^201 ' "$WORK/post.txt" || true)"
P50_POST=$(awk '{print $2}' "$WORK/post.txt" | sort -n | awk '{a[NR]=$1} END {print a[int(NR/2)+1]}')
P99_POST=$(awk '{print $2}' "$WORK/post.txt" | sort -n | awk '{a[NR]=$1} END {print a[int(NR*0.99)]}')
case $BACKEND in
  mysql) RAW=$("$FLOORS/raw_floor.sh" 100 1 migrations/tenant/mysql "${P}raw" | awk '{print $(NF-1)/100}') ;;
  postgres) RAW=$("$FLOORS/raw_floor_pg.sh" 100 1 migrations/tenant/postgres "${P}raw" | awk '{print $(NF-1)/100}') ;;
  sqlite) RAW=$(python3 -c "
import sqlite3,glob,time,os
sql=''.join(open(f).read()+'\n' for f in sorted(glob.glob('migrations/tenant/sqlite/*.sql')))
t=time.time()
for i in range(100):
    c=sqlite3.connect('$WORK/raw%d.db'%i); c.executescript('BEGIN;'+sql+'COMMIT;'); c.close()
print((time.time()-t)/100)") ;;
esac
printf 'POST p50 %.1f ms  p99 %.1f ms  raw single-tenant DDL %.1f ms  ratio p50/raw %.2f\n' \
  "$(awk "BEGIN{print $P50_POST*1000}")" "$(awk "BEGIN{print $P99_POST*1000}")" \
  "$(awk "BEGIN{print $RAW*1000}")" "$(awk "BEGIN{print $P50_POST/$RAW}")"
printf 'server RSS after: %.1f MiB\n' "$(awk "BEGIN{print $(ps -o rss= -p "$SERVER")/1024}")"
