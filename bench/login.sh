#!/usr/bin/env bash
# Login flood benchmark (issue 8's target): waves of parallel POST /auth/login with 1 KB
# passwords against `serve` on the SQLite default, while a probe asks GET /healthz every
# 10 ms and the server's RSS is sampled every 10 ms. Two floods:
#   distributed: every login from its own loopback address (127.0.x.y) for an e-mail that
#                does not exist (so no account back-off refuses it early: each costs a full
#                password check), so only the bound on checks stands between it and the memory
#   one address: every login from 127.0.0.1 (the per-address throttle answers 429)
# Prints, per flood: answers by status, peak RSS, /healthz p50/p99/max and how many probes
# took over 50 ms. Targets: peak RSS < 200 MB, every /healthz within 50 ms.
# Usage: bench/login.sh [PARALLEL=200] [WAVES=5]
set -euo pipefail
cd "$(dirname "$0")/.."
PARALLEL=${1:-200}
WAVES=${2:-5}
cargo build --release --quiet
BIN=$PWD/target/release/tenant-migrator
WORK=$(mktemp -d)
PORT=$((20000 + RANDOM % 20000))
export LOG_FORMAT=json RUST_LOG=warn BIND_ADDR=127.0.0.1:$PORT DATA_DIR=$WORK/data
SECRET_KEY=$(head -c32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export SECRET_KEY
SERVER=
cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

printf 'admin-passphrase-for-bench' | $BIN create-admin bench@example.com --role admin >/dev/null
$BIN serve > "$WORK/server.log" 2>&1 & SERVER=$!
for _ in $(seq 100); do $BIN healthcheck && break; sleep 0.1; done
echo "== login flood: $PARALLEL parallel logins x $WAVES waves, 1 KB passwords (nproc=$(nproc), release build)"
python3 - "$PORT" "$SERVER" "$PARALLEL" "$WAVES" <<'PY'
import json, multiprocessing, socket, sys, threading, time

port, pid, parallel, waves = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

def rss_mb():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0

def request(raw, source=None, timeout=30):
    s = socket.socket()
    s.settimeout(timeout)
    if source:
        s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    s.sendall(raw)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    return int(data.split(b" ", 2)[1])

def login(n):
    body = json.dumps({"email": f"nobody{n}@example.com", "password": "x" * 1024}).encode()
    return (b"POST /auth/login HTTP/1.1\r\nHost: b\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
health = b"GET /healthz HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n"

def watch(stop, out):
    # Its own process, so the flood's threads never delay a probe on the client side.
    probes, peak = [], [rss_mb()]
    while not stop.is_set():
        t = time.perf_counter()
        try:
            request(health, timeout=5)
            probes.append((time.perf_counter() - t) * 1000)
        except OSError:
            probes.append(5000.0)
        peak.append(rss_mb())
        time.sleep(0.01)
    out.put((probes, peak))

def flood(name, source_of):
    stop, out = multiprocessing.Event(), multiprocessing.Queue()
    watcher = multiprocessing.Process(target=watch, args=(stop, out))
    watcher.start()
    time.sleep(0.2)
    statuses = {}
    lock = threading.Lock()
    start = time.perf_counter()
    for wave in range(waves):
        def one(i):
            try:
                n = wave * parallel + i
                st = request(login(n), source_of(n))
            except OSError as e:
                st = type(e).__name__
            with lock:
                statuses[st] = statuses.get(st, 0) + 1
        threads = [threading.Thread(target=one, args=(i,)) for i in range(parallel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    took = time.perf_counter() - start
    stop.set()
    probes, peak = out.get()
    watcher.join()
    probes.sort()
    p = lambda q: probes[min(len(probes) - 1, int(q * len(probes)))]
    print(f"{name:12} answers {dict(sorted(statuses.items(), key=str))} in {took:.1f} s; "
          f"peak RSS {max(peak):.0f} MB (idle {peak[0]:.0f} MB); "
          f"/healthz n={len(probes)} p50 {p(0.5):.1f} ms p99 {p(0.99):.1f} ms max {probes[-1]:.1f} ms, "
          f"{sum(1 for x in probes if x > 50)} over 50 ms")

flood("distributed", lambda n: f"127.{1 + n // 65025}.{(n // 255) % 255}.{1 + n % 255}")
flood("one address", lambda n: None)
PY
