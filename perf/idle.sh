#!/usr/bin/env bash
# perf/idle.sh - resident memory of idle keep-alive client connections (performance issue:
# "an idle keep-alive client connection costs <= 4 KiB of resident memory: show it with
# 10 000 idle connections").
#
# Starts the built-in origin and a one-shard ringproxy in http mode (TLS=1: a TLS
# frontend with a throw-away certificate), opens CONNS client connections at RATE per
# second (python, one HTTP/1.1 request each, answer read, then idle), waits HOLD seconds
# (past the proxy's one-second buffer hold), and prints the proxy's VmRSS before, after,
# and per connection. It also pauses HOLD seconds halfway and samples VmRSS there: the
# second half's growth per connection is the marginal cost of an idle connection, without
# the fixed part (what the shard keeps whatever the count: spare buffers of the busy
# connections, the allocator's free lists). Usage:
#   perf/idle.sh                    # 10 000 connections at 500/s
#   CONNS=2000 RATE=0 perf/idle.sh  # RATE=0: as fast as they open
#   BIN=/path/to/ringproxy perf/idle.sh  # another build (none is made then)
# Needs `ulimit -n` above CONNS + 100 (the hard limit on this VM is 20 000).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
CONNS=${CONNS:-10000}
RATE=${RATE:-500}
HOLD=${HOLD:-3}
TLS=${TLS:-0}
PORT=${PORT:-8390}
ORIGIN_PORT=${ORIGIN_PORT:-9390}
RUN_DIR=${RUN_DIR:-/tmp/ringproxy-idle.$$}
mkdir -p "$RUN_DIR"
ulimit -n "$((CONNS + 200))" 2>/dev/null || { echo "idle.sh: cannot raise ulimit -n to $((CONNS + 200))" >&2; exit 1; }
if [[ -z ${BIN:-} ]]; then
  (cd "$ROOT" && cargo build --release --quiet)
  BIN=$ROOT/target/release/ringproxy
fi

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

"$BIN" origin --listen "127.0.0.1:$ORIGIN_PORT" > "$RUN_DIR/origin.log" 2>&1 &
pids+=($!)

tls_lines=""
if [[ $TLS == 1 ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -keyout "$RUN_DIR/key.pem" -out "$RUN_DIR/cert.pem" 2>/dev/null
  tls_lines="[frontend.tls]
certificates = [{ cert = \"$RUN_DIR/cert.pem\", key = \"$RUN_DIR/key.pem\" }]"
fi
cat > "$RUN_DIR/proxy.toml" <<EOF
[global]
shards = 1
grace = "1s"

[[frontend]]
name = "idle"
bind = ["127.0.0.1:$PORT"]
mode = "http"
backend = "origin"
timeout_http_keep_alive = "10m"
timeout_client = "10m"
$tls_lines

[[backend]]
name = "origin"
mode = "http"

[[backend.server]]
name = "o1"
address = "127.0.0.1:$ORIGIN_PORT"
EOF
"$BIN" -c "$RUN_DIR/proxy.toml" > "$RUN_DIR/proxy.log" 2>&1 &
proxy=$!
pids+=($proxy)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.05; done

rss() { awk '/^VmRSS/ { print $2 * 1024 }' "/proc/$proxy/status"; }
# Warm the proxy (buffers, pools) with a few requests so "before" is a working proxy.
if [[ $TLS == 1 ]]; then url=https; else url=http; fi
curl -s -k -o /dev/null "$url://127.0.0.1:$PORT/" || true
sleep 1.5
before=$(rss)

python3 - "$PORT" "$CONNS" "$RATE" "$HOLD" "$TLS" "$proxy" "$before" <<'PY'
import socket, ssl, sys, time
port, conns, rate, hold, tls, proxy, before = (int(a) for a in sys.argv[1:])
ctx = None
if tls:
    ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
req = b"GET / HTTP/1.1\r\nHost: idle\r\n\r\n"
def rss():
    for line in open(f"/proc/{proxy}/status"):
        if line.startswith("VmRSS"): return int(line.split()[1]) * 1024
socks, start, failed = [], time.time(), 0
half = conns // 2
for i in range(conns):
    if i == half:
        paused = time.time()
        time.sleep(hold)
        mid, mid_n = rss(), len(socks)
        start += time.time() - paused
    if rate:
        delay = start + i / rate - time.time()
        if delay > 0: time.sleep(delay)
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        if ctx: s = ctx.wrap_socket(s, server_hostname="localhost")
        s.sendall(req)
        got = b""
        while b"Hello, world!" not in got:
            chunk = s.recv(4096)
            if not chunk: raise OSError("closed")
            got += chunk
        socks.append(s)
    except OSError:
        failed += 1
time.sleep(hold)
after = rss()
n = len(socks)
print(f"connections idle: {n} (failed {failed}), opened at {rate or 'max'}/s, tls={tls}")
print(f"proxy VmRSS before: {before} B, with {mid_n} idle: {mid} B, with them all idle {hold}s later: {after} B")
print(f"per idle connection: {(after - before) / max(n, 1):.0f} B")
print(f"marginal, second half: {(after - mid) / max(n - mid_n, 1):.0f} B per idle connection")
PY
