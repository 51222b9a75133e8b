#!/usr/bin/env bash
# Fleet benchmark: provision N tenants (`create` with many names, --concurrency 4), a no-op
# `upgrade-all`, then one added ALTER migration over all tenants. Prints seconds, tenants/s
# and peak connections, each beside its physical floor measured in this same run:
#   provisioning  vs  the same DDL run by 4 plain client sessions with no tracking
#   no-op upgrade vs  one plain session reading every tenant's history in batches of 500
# Usage: bench/fleet.sh N [--backend mysql|postgres|sqlite] [--runs R] [--skip-alter] [--keep] [--table-cache]
#   --runs R: provisioning and its floor alternate R times (default 3), each keeping its best;
#   every run provisions a fleet of its own (the last one is used for the upgrades).
#   --table-cache (MySQL): also measure the no-op with table_definition_cache and
#   table_open_cache sized for the fleet (restored afterwards): a server whose table cache is
#   smaller than the fleet reopens every history table on every run, floor included.
# Env: FLOORS (../shared/bench), MYSQL_* / PG* as the floor scripts take them.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:?usage: bench/fleet.sh N [--backend mysql|postgres|sqlite] [--skip-alter] [--keep]}
shift
BACKEND=mysql SKIP_ALTER=0 KEEP=0 TABLE_CACHE=0 RUNS=3
while [ $# -gt 0 ]; do
  case $1 in
    --backend) BACKEND=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --skip-alter) SKIP_ALTER=1; shift ;;
    --keep) KEEP=1; shift ;;
    --table-cache) TABLE_CACHE=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
FLOORS=${FLOORS:-../shared/bench}
CONC=4
BIN=target/release/tenant-migrator
cargo build --release --quiet
P="bf$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
WORK=$(mktemp -d)
NAMES=$(seq -f "${P}_%05g" 1 "$N")

export LOG_FORMAT=json RUST_LOG=warn TENANT_ENGINE_POOL_SIZE=$CONC
MY=(mariadb -h"${MYSQL_HOST:-127.0.0.1}" -P"${MYSQL_PORT:-3306}" -u"${MYSQL_USER:-root}" -N -B)
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres} PGDATABASE=${PGDATABASE:-postgres}
# Points the tool at the fleet of prefix $1 (its own catalog, and for SQLite its own folder).
use_fleet() {
  FP=$1
  NAMES=$(seq -f "${FP}_%05g" 1 "$N")
  case $BACKEND in
    mysql)
      export DATABASE_URL="mysql://root@127.0.0.1:3306/${FP}_cat"
      export TENANT_URL_TEMPLATE="mysql://root@127.0.0.1:3306/{schema}" ;;
    postgres)
      export DATABASE_URL="postgres://postgres@127.0.0.1:5432/${PGDATABASE}?application_name=${P}"
      export CATALOG_SCHEMA="${FP}_cat" ;;
    sqlite)
      export DATABASE_URL="sqlite://$WORK/$FP/catalog.db" ;;
    *) echo "unknown backend $BACKEND" >&2; exit 2 ;;
  esac
}
use_fleet "$P"

RESTORE_CACHE=
# Drops every schema (database, file) whose name starts with $1 (SQLite: the fleet folder $1
# without its trailing underscore).
drop_prefix() {
  local like=${1//_/\\_}
  case $BACKEND in
    mysql) "${MY[@]}" -e "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '${like}%'" \
             | sed 's/.*/DROP DATABASE `&`;/' | "${MY[@]}" ;;
    postgres) psql -qAt -c "SELECT nspname FROM pg_namespace WHERE nspname LIKE '${like}%'" \
             | sed 's/.*/DROP SCHEMA "&" CASCADE;/' | psql -q >/dev/null 2>&1 ;;
    sqlite) rm -rf "${WORK:?}/${1%_}" ;;
  esac
}
cleanup() {
  [ -n "$RESTORE_CACHE" ] && "${MY[@]}" -e "$RESTORE_CACHE"
  [ "$KEEP" = 1 ] && { echo "kept schemas with prefix $P"; return; }
  drop_prefix "$P"
  rm -rf "$WORK"
}
trap cleanup EXIT

now() { date +%s.%N; }
secs() { awk "BEGIN{printf \"%.3f\", $2 - $1}"; }
ratio() { awk "BEGIN{ if ($2 > 0) printf \"%.2f\", $1 / $2; else print \"n/a\" }"; }
rate() { awk "BEGIN{ if ($2 > 0) printf \"%.0f\", $1 / $2; else print \"n/a\" }"; }

# Peak connections: MySQL's own counter; PostgreSQL sampled from pg_stat_activity.
peak_reset() {
  case $BACKEND in
    mysql) "${MY[@]}" -e "FLUSH STATUS" ;;
    postgres)
      # One session polling with \watch: a client started per sample would itself take a
      # good share of this 2-core machine away from the run it measures.
      printf '%s\n%s\n' "SELECT count(*) FROM pg_stat_activity WHERE application_name = '${P}';" '\watch 0.05' \
        | psql -qAt > "$WORK/peak_samples" 2>/dev/null & SAMPLER=$! ;;
  esac
}
peak_read() {
  case $BACKEND in
    mysql) "${MY[@]}" -e "SHOW GLOBAL STATUS LIKE 'Max_used_connections'" | awk '{print $2 - 1}' ;;  # minus this session
    postgres) pkill -P "$SAMPLER" psql 2>/dev/null; kill "$SAMPLER" 2>/dev/null; wait "$SAMPLER" 2>/dev/null || true
      sort -n "$WORK/peak_samples" | tail -1 ;;
    sqlite) echo "n/a (files)" ;;
  esac
}

# ---- floors ---------------------------------------------------------------------------
floor_provision() {
  case $BACKEND in
    mysql) "$FLOORS/raw_floor.sh" "$N" "$CONC" migrations/tenant/mysql "${P}raw" | awk '{print $(NF-1)}' ;;
    postgres) "$FLOORS/raw_floor_pg.sh" "$N" "$CONC" migrations/tenant/postgres "${P}raw" | awk '{print $(NF-1)}' ;;
    sqlite) rm -rf "$WORK/rawfloor"; python3 - "$N" "$CONC" migrations/tenant/sqlite "$WORK/rawfloor" <<'PY'
import sqlite3, sys, os, time, glob
from concurrent.futures import ProcessPoolExecutor
n, c, d, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
os.makedirs(out, exist_ok=True)
sql = "".join(open(f).read() + "\n" for f in sorted(glob.glob(d + "/*.sql")))
def one(i):
    con = sqlite3.connect(f"{out}/t{i}.db"); con.executescript("BEGIN;" + sql + "COMMIT;"); con.close()
t = time.time()
with ProcessPoolExecutor(c) as ex: list(ex.map(one, range(n), chunksize=16))
print(f"{time.time() - t:.3f}")
PY
    ;;
  esac
}

floor_noop() {
  case $BACKEND in
    mysql) echo "$NAMES" | "$FLOORS/noop_floor.sh" _tenant_migrations | awk '{print $(NF-1)}' ;;
    postgres)
      # The same as noop_floor.sh for PostgreSQL: one psql session, 500 tenants per UNION ALL.
      echo "$NAMES" | awk '{ if ((NR-1) % 500) printf " UNION ALL "; else if (NR>1) print ";";
          printf "SELECT \x27%s\x27, MAX(version) FROM \"%s\"._tenant_migrations", $1, $1 } END { print ";" }' > "$WORK/noop.sql"
      s=$(now); psql -qAt -f "$WORK/noop.sql" > /dev/null; e=$(now); secs "$s" "$e" ;;
    sqlite) python3 - "$WORK/$FP/tenants" <<'PY'
import sqlite3, sys, os, time
d = sys.argv[1]; t = time.time()
for f in os.listdir(d):
    if f.endswith(".db"):
        con = sqlite3.connect(os.path.join(d, f)); con.execute("SELECT MAX(version) FROM _tenant_migrations").fetchone(); con.close()
print(f"{time.time() - t:.3f}")
PY
    ;;
  esac
}

# ---- runs -----------------------------------------------------------------------------
printf 'fleet benchmark: backend=%s N=%d concurrency=%d pool=%d (%s)\n' "$BACKEND" "$N" "$CONC" "$CONC" "$(date -u +%FT%TZ)"

# Floor and tool alternate, each keeping its best run.
min() { awk "BEGIN{ print ($1 < $2) ? $1 : $2 }"; }
F_PROV=999999 T_PROV=999999 PROV_RUNS=""
# Each timed run starts from vacuumed system catalogs and a checkpoint, so none pays for the
# dead catalog rows (autovacuum) or the dirty pages the run before it left (a floor drops its
# schemas right after its timing).
settle() {
  if [ "$BACKEND" = postgres ]; then
    psql -qAt -c "VACUUM pg_catalog.pg_class, pg_catalog.pg_attribute, pg_catalog.pg_depend, \
      pg_catalog.pg_type, pg_catalog.pg_constraint, pg_catalog.pg_index, pg_catalog.pg_namespace, \
      pg_catalog.pg_attrdef, pg_catalog.pg_sequence, pg_catalog.pg_shdepend" -c CHECKPOINT >/dev/null
  fi
  sync
}
for r in $(seq 1 "$RUNS"); do
  settle
  F=$(floor_provision)
  use_fleet "${P}r$r"
  settle
  peak_reset
  s=$(now); $BIN create $NAMES --concurrency $CONC --output json > "$WORK/create.json"; e=$(now)
  T=$(secs "$s" "$e"); PEAK_PROV=$(peak_read)
  python3 -c "import json,sys; r=json.load(open('$WORK/create.json')); assert r['successful_migrations']==$N and r['failed']==0, (r['successful_migrations'], r['failed'])"
  PROV_RUNS="$PROV_RUNS run$r: tool ${T}s floor ${F}s ($(ratio "$T" "$F")x);"
  PAIR_RATIOS="${PAIR_RATIOS:-} $(ratio "$T" "$F")"
  F_PROV=$(min "$F_PROV" "$F"); T_PROV=$(min "$T_PROV" "$T")
  # As the floor drops its schemas after each run, so does the tool (but the last fleet, which
  # the upgrades use): no run works in a server fuller than its pair's.
  [ "$r" -lt "$RUNS" ] && drop_prefix "${P}r${r}_"
done
echo "provisioning runs:$PROV_RUNS"
echo "provisioning: median of the pairs' ratios $(echo $PAIR_RATIOS | tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}')x"

# Floor and tool alternate twice and each keeps its best run: neither gets only a cold or
# only a warm server.
noop_run() {
  local s e
  s=$(now); $BIN upgrade-all --output json > "$WORK/noop.json"; e=$(now)
  python3 -c "import json; r=json.load(open('$WORK/noop.json')); assert r['skipped']==$N and r['migrations_applied']==0, r['skipped']"
  secs "$s" "$e"
}
F1=$(floor_noop)
peak_reset
T1=$(noop_run); PEAK_NOOP=$(peak_read)
F2=$(floor_noop)
T2=$(noop_run)
F_NOOP=$(min "$F1" "$F2"); T_NOOP=$(min "$T1" "$T2")

if [ "$TABLE_CACHE" = 1 ] && [ "$BACKEND" = mysql ]; then
  read -r OLD_TDC OLD_TOC < <("${MY[@]}" -e "SELECT @@table_definition_cache, @@table_open_cache")
  RESTORE_CACHE="SET GLOBAL table_definition_cache = $OLD_TDC, GLOBAL table_open_cache = $OLD_TOC"
  "${MY[@]}" -e "SET GLOBAL table_definition_cache = $((N * 2 + 1000)), GLOBAL table_open_cache = $((N * 2 + 1000))"
  floor_noop > /dev/null; noop_run > /dev/null   # fill the caches
  F3=$(floor_noop); T3=$(noop_run); F4=$(floor_noop); T4=$(noop_run)
  F_NOOP_TC=$(min "$F3" "$F4"); T_NOOP_TC=$(min "$T3" "$T4")
  "${MY[@]}" -e "$RESTORE_CACHE"; RESTORE_CACHE=
fi

printf '\n%-22s %10s %12s %12s %8s %10s\n' phase seconds tenants/s floor_s ratio peak_conn
printf '%-22s %10s %12s %12s %8s %10s\n' provision "$T_PROV" "$(rate "$N" "$T_PROV")" "$F_PROV" "$(ratio "$T_PROV" "$F_PROV")" "$PEAK_PROV"
printf '%-22s %10s %12s %12s %8s %10s\n' noop-upgrade-all "$T_NOOP" "$(rate "$N" "$T_NOOP")" "$F_NOOP" "$(ratio "$T_NOOP" "$F_NOOP")" "$PEAK_NOOP"
if [ -n "${T_NOOP_TC:-}" ]; then
  printf '%-22s %10s %12s %12s %8s %10s\n' noop-table-cache "$T_NOOP_TC" "$(rate "$N" "$T_NOOP_TC")" "$F_NOOP_TC" "$(ratio "$T_NOOP_TC" "$F_NOOP_TC")" "-"
fi

if [ "$SKIP_ALTER" = 0 ]; then
  cp -r migrations "$WORK/migrations"
  echo "ALTER TABLE users_tenant ADD COLUMN loyalty_points INT NOT NULL DEFAULT 0;" > "$WORK/migrations/tenant/mysql/0004_add_loyalty_points.sql"
  echo "ALTER TABLE users_tenant ADD COLUMN loyalty_points integer NOT NULL DEFAULT 0;" > "$WORK/migrations/tenant/postgres/0004_add_loyalty_points.sql"
  echo "ALTER TABLE users_tenant ADD COLUMN loyalty_points INTEGER NOT NULL DEFAULT 0;" > "$WORK/migrations/tenant/sqlite/0004_add_loyalty_points.sql"
  peak_reset
  s=$(now); MIGRATIONS_DIR="$WORK/migrations" $BIN upgrade-all --concurrency $CONC --output json > "$WORK/alter.json"; e=$(now)
  T_ALTER=$(secs "$s" "$e"); PEAK_ALTER=$(peak_read)
  python3 -c "import json; r=json.load(open('$WORK/alter.json')); assert r['successful_migrations']==$N, r['successful_migrations']"
  printf '%-22s %10s %12s %12s %8s %10s\n' alter-upgrade-all "$T_ALTER" "$(rate "$N" "$T_ALTER")" "-" "-" "$PEAK_ALTER"
fi
printf '\npeak_conn: server connections opened by the tool (target: pool + 2 = %d)\n' $((CONC + 2))
