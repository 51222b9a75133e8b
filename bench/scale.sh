#!/usr/bin/env bash
# Scale-out benchmark (MariaDB): does a second database server add capacity, or only tenants?
#   provisioning  M tenants on one server  vs  2 x M over two servers (target: <= 1.3x)
#   no-op         N tenants on one server  vs  2 x N over two servers (target: <= 1.3x)
# Each side beside its physical floor measured in the same run (../shared/bench): the raw DDL
# by plain client sessions (the two servers' floors run side by side), and the batched
# history read (both servers' floors side by side). No-op figures are the best of 3
# alternating runs, with both servers' table caches sized to the fleet.
#
# The second server is started here on a free port with its own data directory and the main
# server's cache and durability settings, and removed at the end.
# Usage: bench/scale.sh [N per server, default 10000] [M, default 1000]
# Env: FLOORS (../shared/bench), KEEP=1 keeps the schemas and the second server's folder.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-10000}
M=${2:-1000}
FLOORS=${FLOORS:-../shared/bench}
CONC=4
BIN=target/release/tenant-migrator
cargo build --release --quiet
P="bs$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')"
WORK=$(mktemp -d)
MY1=(mariadb -h127.0.0.1 -P3306 -uroot -N -B)

now() { date +%s.%N; }
secs() { awk "BEGIN{printf \"%.3f\", $2 - $1}"; }
ratio() { awk "BEGIN{ if ($2 > 0) printf \"%.2f\", $1 / $2; else print \"n/a\" }"; }
min() { awk "BEGIN{ print ($1 < $2) ? $1 : $2 }"; }

# ---- the second server -------------------------------------------------------------------
PORT2=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DIR2="$WORK/server2"
mkdir -p "$DIR2" && chown mysql:mysql "$DIR2" "$WORK" 2>/dev/null || true
chmod 755 "$WORK"
read -r BP TOC TDC FLUSH < <("${MY1[@]}" -e "SELECT @@innodb_buffer_pool_size, @@table_open_cache, @@table_definition_cache, @@innodb_flush_log_at_trx_commit")
mariadb-install-db --no-defaults --user=mysql --datadir="$DIR2/data" \
  --auth-root-authentication-method=normal --skip-test-db > "$WORK/install.log" 2>&1
mariadbd --no-defaults --user=mysql --datadir="$DIR2/data" --port="$PORT2" \
  --bind-address=127.0.0.1 --socket="$DIR2/sock" --pid-file="$DIR2/pid" \
  --log-error="$DIR2/err.log" --skip-name-resolve --skip-log-bin \
  --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
  --innodb-buffer-pool-size="$BP" --table-open-cache="$TOC" --table-definition-cache="$TDC" \
  --innodb-flush-log-at-trx-commit="$FLUSH" --max-connections=200 &
SERVER2=$!
MY2=(mariadb -h127.0.0.1 -P"$PORT2" -uroot -N -B)
for _ in $(seq 1 120); do "${MY2[@]}" -e "SELECT 1" >/dev/null 2>&1 && break; sleep 0.5; done

RESTORE_CACHE=
cleanup() {
  [ -n "$RESTORE_CACHE" ] && "${MY1[@]}" -e "$RESTORE_CACHE"
  if [ "${KEEP:-0}" = 1 ]; then echo "kept prefix $P, second server data in $DIR2"; kill "$SERVER2"; return; fi
  # The second server goes with its folder; only the shared one needs its schemas dropped.
  kill "$SERVER2" 2>/dev/null; wait "$SERVER2" 2>/dev/null || true
  "${MY1[@]}" -e "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '${P}%'" \
    | sed 's/.*/DROP DATABASE `&`;/' | "${MY1[@]}" || true
  rm -rf "$WORK"
}
trap cleanup EXIT

S1="mysql://root@127.0.0.1:3306/{schema}"
S2="mysql://root@127.0.0.1:$PORT2/{schema}"
export LOG_FORMAT=json RUST_LOG=warn TENANT_ENGINE_POOL_SIZE=$CONC
unset TENANT_URL_TEMPLATE
one() { DATABASE_URL="mysql://root@127.0.0.1:3306/${P}_$1" TENANT_SERVERS="db1=$S1" "${@:2}"; }
two() { DATABASE_URL="mysql://root@127.0.0.1:3306/${P}_$1" TENANT_SERVERS="db1=$S1,db2=$S2" "${@:2}"; }
check() { # report, expected tenants
  python3 -c "import json,sys; r=json.load(open('$1')); assert r['failed']==0 and len(r['tenants'])==$2, (r['failed'], len(r['tenants']))"
}

printf 'scale benchmark: N=%d per server (no-op), M=%d (provisioning), concurrency=%d per server, pool=%d (%s)\n' \
  "$N" "$M" "$CONC" "$CONC" "$(date -u +%FT%TZ)"

# ---- provisioning: M on one server, 2M over two ------------------------------------------
F1=$("$FLOORS/raw_floor.sh" "$M" "$CONC" migrations/tenant/mysql "${P}f1" | awk '{print $(NF-1)}')
MYSQL_PORT=3306 "$FLOORS/raw_floor.sh" "$M" "$CONC" migrations/tenant/mysql "${P}fa" > "$WORK/fa" &
FA=$!
MYSQL_PORT=$PORT2 "$FLOORS/raw_floor.sh" "$M" "$CONC" migrations/tenant/mysql "${P}fb" > "$WORK/fb" &
FB=$!
wait "$FA" "$FB"
# The two servers' floors ran side by side: the pair took as long as the slower one.
F2=$(awk '{print $(NF-1)}' "$WORK/fa" "$WORK/fb" | sort -n | tail -1)

s=$(now); one p1 $BIN create $(seq -f "${P}_p1_%05g" 1 "$M") --concurrency $CONC --output json > "$WORK/p1.json"; e=$(now)
T_P1=$(secs "$s" "$e"); check "$WORK/p1.json" "$M"
s=$(now); two p2 $BIN create $(seq -f "${P}_p2_%05g" 1 $((2 * M))) --concurrency $CONC --output json > "$WORK/p2.json"; e=$(now)
T_P2=$(secs "$s" "$e"); check "$WORK/p2.json" $((2 * M))

# ---- no-op: N on one server, 2N over two -------------------------------------------------
# One catalog with 2N tenants over both servers; the one-server catalog is its copy holding
# only db1's tenants (the same schemas, the same server).
two big $BIN create $(seq -f "${P}_n_%05g" 1 $((2 * N))) --concurrency $CONC --output json > "$WORK/big.json"
check "$WORK/big.json" $((2 * N))
"${MY1[@]}" -e "CREATE DATABASE ${P}_small"
for t in $("${MY1[@]}" -e "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA='${P}_big' AND TABLE_TYPE='BASE TABLE'"); do
  "${MY1[@]}" -e "CREATE TABLE ${P}_small.\`$t\` LIKE ${P}_big.\`$t\`; INSERT INTO ${P}_small.\`$t\` SELECT * FROM ${P}_big.\`$t\`"
done
"${MY1[@]}" -e "DELETE FROM ${P}_small.tenants WHERE server <> 'db1'"
ON1=$("${MY1[@]}" -e "SELECT schema_name FROM ${P}_small.tenants")
ON2=$("${MY1[@]}" -e "SELECT schema_name FROM ${P}_big.tenants WHERE server = 'db2'")
N1=$(echo "$ON1" | wc -l)

noop_one() { local s e; s=$(now); one small $BIN upgrade-all --output json > "$WORK/n1.json"; e=$(now); check "$WORK/n1.json" "$N1"; secs "$s" "$e"; }
noop_two() { local s e; s=$(now); two big $BIN upgrade-all --output json > "$WORK/n2.json"; e=$(now); check "$WORK/n2.json" $((2 * N)); secs "$s" "$e"; }
floor_one() { echo "$ON1" | "$FLOORS/noop_floor.sh" _tenant_migrations | awk '{print $(NF-1)}'; }
floor_two() {
  local s e
  s=$(now)
  echo "$ON1" | MYSQL_PORT=3306 "$FLOORS/noop_floor.sh" _tenant_migrations > /dev/null &
  echo "$ON2" | MYSQL_PORT=$PORT2 "$FLOORS/noop_floor.sh" _tenant_migrations > /dev/null &
  wait; e=$(now); secs "$s" "$e"
}
# Table caches sized to the fleet on both servers (a smaller cache reopens every history
# table on every run, floors included; README "Known limits"), restored afterwards.
RESTORE_CACHE="SET GLOBAL table_definition_cache = $("${MY1[@]}" -e 'SELECT @@table_definition_cache'), GLOBAL table_open_cache = $("${MY1[@]}" -e 'SELECT @@table_open_cache')"
for my in "${MY1[*]}" "${MY2[*]}"; do
  $my -e "SET GLOBAL table_definition_cache = $((N * 2 + 1000)), GLOBAL table_open_cache = $((N * 2 + 1000))"
done
noop_one > /dev/null; noop_two > /dev/null   # warm both servers' caches
B1=999; B2=999; BF1=999; BF2=999
for _ in 1 2 3; do
  BF1=$(min "$BF1" "$(floor_one)"); B1=$(min "$B1" "$(noop_one)")
  BF2=$(min "$BF2" "$(floor_two)"); B2=$(min "$B2" "$(noop_two)")
done

printf '\n%-34s %10s %10s %8s\n' run seconds floor_s ratio
printf '%-34s %10s %10s %8s\n' "provision $M, one server" "$T_P1" "$F1" "$(ratio "$T_P1" "$F1")"
printf '%-34s %10s %10s %8s\n' "provision $((2 * M)), two servers" "$T_P2" "$F2" "$(ratio "$T_P2" "$F2")"
printf '%-34s %10s %10s %8s\n' "no-op $N1, one server" "$B1" "$BF1" "$(ratio "$B1" "$BF1")"
printf '%-34s %10s %10s %8s\n' "no-op $((2 * N)), two servers" "$B2" "$BF2" "$(ratio "$B2" "$BF2")"
printf '\nscale-out (two servers / one server; target <= 1.30):\n'
printf '  provisioning 2x%d / %d: %s (floors: %s)\n' "$M" "$M" "$(ratio "$T_P2" "$T_P1")" "$(ratio "$F2" "$F1")"
printf '  no-op 2x%d / %d:        %s (floors: %s)\n' "$N" "$N1" "$(ratio "$B2" "$B1")" "$(ratio "$BF2" "$BF1")"
