#!/usr/bin/env bash
# perf/pool.sh - backend connection reuse under one-shot clients: `ab -n 20000 -c 64`
# without keep-alive through ringproxy (one shard), HAProxy (`http-reuse always`, one
# thread) and nginx (one worker, upstream `keepalive 64`), same pinning (ab on CPU 0;
# origin and proxy on CPU 1), then `wrk -c256` through ringproxy for its reuse ratio.
#
# Prints per system: client req/s, proxy CPU seconds per 1000 requests, and backend
# connections opened per 1000 requests (the kernel's TCP ActiveOpens counter over the
# run, minus the client's own connections: run it on an otherwise quiet machine).
# Usage: perf/pool.sh            (REPS=3 N=20000 by default)
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

REPS=${REPS:-3}
N=${N:-20000}
RUN_DIR=${RUN_DIR:-/tmp/ringproxy-pool.$(date +%Y%m%d-%H%M%S).$$}
mkdir -p "$RUN_DIR"
O=$((9101 + PORT_OFFSET))      # origin
RP=$((8401 + PORT_OFFSET))     # ringproxy
HA=$((8402 + PORT_OFFSET))     # haproxy
NG=$((8403 + PORT_OFFSET))     # nginx
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

active_opens() { awk '/^Tcp:/ && ++n == 2 { print $6 }' /proc/net/snmp; }

taskset -c 1 "$ROOT/target/release/ringproxy" origin --listen "127.0.0.1:$O" 2>/dev/null &
pids+=($!)

cat > "$RUN_DIR/ringproxy.toml" <<TOML
[global]
shards = 1
grace = "1s"
[[frontend]]
name = "bench"
bind = ["127.0.0.1:$RP"]
mode = "http"
backend = "origin"
max_keep_alive_requests = 0
[[backend]]
name = "origin"
mode = "http"
[[backend.server]]
name = "o"
address = "127.0.0.1:$O"
TOML
taskset -c 1 "$ROOT/target/release/ringproxy" -c "$RUN_DIR/ringproxy.toml" 2>"$RUN_DIR/ringproxy.log" &
rp_pid=$!; pids+=($rp_pid)

cat > "$RUN_DIR/haproxy.cfg" <<CFG
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend f
  bind 127.0.0.1:$HA
  default_backend b
backend b
  server o 127.0.0.1:$O
CFG
taskset -c 1 haproxy -f "$RUN_DIR/haproxy.cfg" -db 2>"$RUN_DIR/haproxy.log" &
ha_pid=$!; pids+=($ha_pid)

cat > "$RUN_DIR/nginx.conf" <<CFG
worker_processes 1;
daemon off;
pid $RUN_DIR/nginx.pid;
error_log $RUN_DIR/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  upstream o { server 127.0.0.1:$O; keepalive 64; }
  server {
    listen 127.0.0.1:$NG;
    location / { proxy_pass http://o; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
CFG
taskset -c 1 nginx -c "$RUN_DIR/nginx.conf" -p "$RUN_DIR" 2>>"$RUN_DIR/nginx-error.log" &
ng_pid=$!; pids+=($ng_pid)

for p in $O $RP $HA $NG; do wait_port "$p"; done

# run NAME PID PORT: one measured ab run; prints "name rps cpu_per_1000 connects_per_1000".
run() {
  local name=$1 pid=$2 port=$3 out
  taskset -c 0 ab -q -n 2000 -c 64 "http://127.0.0.1:$port/" >/dev/null   # warm the pools
  local c0 t0 c1 t1
  c0=$(active_opens); t0=$(cpu_ticks "$pid")
  out=$(taskset -c 0 ab -q -r -s 10 -n "$N" -c 64 "http://127.0.0.1:$port/")
  c1=$(active_opens); t1=$(cpu_ticks "$pid")
  local rps failed
  rps=$(awk '/^Requests per second/ { print $4 }' <<<"$out")
  failed=$(awk '/^Failed requests/ { print $3 }' <<<"$out")
  [[ $failed == 0 ]] || echo "$name: $failed failed requests" >&2
  awk -v n="$name" -v r="$rps" -v t=$((t1 - t0)) -v c=$((c1 - c0 - N)) -v N="$N" \
    'BEGIN { printf "%s %s %.4f %.2f\n", n, r, t / 100 / N * 1000, c / N * 1000 }'
}

: > "$RUN_DIR/ab.txt"
for rep in $(seq "$REPS"); do
  run ringproxy "$rp_pid" "$RP" >> "$RUN_DIR/ab.txt"
  run haproxy-always "$ha_pid" "$HA" >> "$RUN_DIR/ab.txt"
  run nginx-keepalive "$ng_pid" "$NG" >> "$RUN_DIR/ab.txt"
done

echo "## ab -n $N -c 64, no client keep-alive (medians of $REPS)"
echo
awk "$AWK_MED"'
  { if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } r[$1] = r[$1] " " $2; c[$1] = c[$1] " " $3; k[$1] = k[$1] " " $4 }
  END {
    print "| system | req/s | proxy CPU s per 1000 req | backend connects per 1000 req |"
    print "|---|---:|---:|---:|"
    for (i = 1; i <= n; i++) { s = order[i]; printf "| %s | %.0f | %.4f | %.2f |\n", s, med(r[s]), med(c[s]), med(k[s]) }
  }' "$RUN_DIR/ab.txt" | tee "$RUN_DIR/pool.md"

# Reuse under keep-alive load: backend connects per request during wrk -c256, after a
# warm-up run that grows the pool to the load.
taskset -c 0 wrk -t1 -c256 -d2s "http://127.0.0.1:$RP/" >/dev/null
c0=$(active_opens)
wout=$(taskset -c 0 wrk -t1 -c256 -d5s "http://127.0.0.1:$RP/")
c1=$(active_opens)
reqs=$(awk '/requests in/ { print $1 }' <<<"$wout")
conns=$((c1 - c0 - 256))
echo
awk -v r="$reqs" -v c="$conns" 'BEGIN { printf "wrk -c256 -d5s through ringproxy: %d requests, %d backend connects, reuse ratio %.4f%%\n", r, c, (r > 0 ? (1 - c / r) * 100 : 0) }' | tee -a "$RUN_DIR/pool.md"
echo "raw: $RUN_DIR" >&2
