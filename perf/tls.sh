#!/usr/bin/env bash
# perf/tls.sh - TLS: ringproxy (rustls, aws-lc-rs) vs HAProxy and nginx (OpenSSL), one
# proxy thread/worker each, same pinning (clients on CPU 0; origins and the proxy on
# CPU 1), measured in one run. ECDSA P-256 certificates made with openssl for the run.
#
# Frontend (TLS termination in front of the plain built-in origin):
#   handshakes  `ab -n $N -c 32 https://...`: one connection, one full handshake per request
#   keep-alive  `wrk -t1 -c64 -d$DUR https://...`: requests over established TLS connections
#   plain       the same over plain http, so that the TLS share of keep-alive is read
#               from one run
# Backend (plain clients, one request per connection, `ab -c 1`, through a proxy to a TLS
# origin, nginx with `return 200`):
#   pooled      ringproxy http_reuse safe (default) / HAProxy `ssl verify none` with
#               `http-reuse always` / nginx `proxy_ssl_session_reuse on` + `keepalive 64`
#   no-pool     ringproxy keep_alive = "server-close" (a new TLS connection per request,
#               resumed), to show what the pool saves
#
# Prints req/s, mean and p99 latency (ab's percentiles; wrk's), proxy CPU seconds per 1000
# requests, medians of $REPS runs. Usage: perf/tls.sh   (REPS=3 N=4000 DUR=5s by default)
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl >/dev/null; }

REPS=${REPS:-3}
N=${N:-4000}
DUR=${DUR:-5s}
RUN_DIR=${RUN_DIR:-/tmp/ringproxy-tls.$(date +%Y%m%d-%H%M%S).$$}
mkdir -p "$RUN_DIR"
O=$((9201 + PORT_OFFSET))      # plain origin (built-in)
OT=$((9202 + PORT_OFFSET))     # TLS origin (nginx)
RP=$((8501 + PORT_OFFSET))     # ringproxy: TLS frontend
RPB=$((8502 + PORT_OFFSET))    # ringproxy: plain frontend -> TLS backend, pooled
RPN=$((8503 + PORT_OFFSET))    # ringproxy: plain frontend -> TLS backend, no pool
RPP=$((8504 + PORT_OFFSET))    # ringproxy: plain frontend -> plain origin
HA=$((8511 + PORT_OFFSET))     # haproxy: TLS frontend
HAB=$((8512 + PORT_OFFSET))    # haproxy: plain frontend -> TLS backend
HAP=$((8513 + PORT_OFFSET))    # haproxy: plain frontend -> plain origin
NG=$((8521 + PORT_OFFSET))     # nginx: TLS frontend
NGB=$((8522 + PORT_OFFSET))    # nginx: plain frontend -> TLS backend
NGP=$((8523 + PORT_OFFSET))    # nginx: plain frontend -> plain origin
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# Certificates: a CA and one leaf for bench.test (also the origin's).
(
  cd "$RUN_DIR"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \
    -days 2 -subj /CN=bench-ca 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout leaf.key -out leaf.csr \
    -subj /CN=bench.test 2>/dev/null
  printf 'subjectAltName=DNS:bench.test,IP:127.0.0.1\n' > leaf.ext
  openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem -days 2 \
    -extfile leaf.ext 2>/dev/null
  cat leaf.pem leaf.key > haproxy.pem
)

taskset -c 1 "$ROOT/target/release/ringproxy" origin --listen "127.0.0.1:$O" 2>/dev/null &
pids+=($!)

cat > "$RUN_DIR/origin-nginx.conf" <<CFG
worker_processes 1;
daemon off;
pid $RUN_DIR/origin-nginx.pid;
error_log $RUN_DIR/origin-nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  ssl_session_cache shared:O:10m;
  server {
    listen 127.0.0.1:$OT ssl;
    ssl_certificate $RUN_DIR/leaf.pem;
    ssl_certificate_key $RUN_DIR/leaf.key;
    location / { return 200 "Hello, world!"; }
  }
}
CFG
taskset -c 1 nginx -c "$RUN_DIR/origin-nginx.conf" -p "$RUN_DIR" 2>>"$RUN_DIR/origin-nginx-error.log" &
pids+=($!)

cat > "$RUN_DIR/ringproxy.toml" <<TOML
[global]
shards = 1
grace = "1s"

[[frontend]]
name = "tls"
bind = ["127.0.0.1:$RP"]
mode = "http"
backend = "origin"
max_keep_alive_requests = 0
[frontend.tls]
certificates = [{ cert = "leaf.pem", key = "leaf.key" }]

[[frontend]]
name = "plain"
bind = ["127.0.0.1:$RPP"]
mode = "http"
backend = "origin"
max_keep_alive_requests = 0

[[frontend]]
name = "to-tls"
bind = ["127.0.0.1:$RPB"]
mode = "http"
backend = "tls-origin"

[[frontend]]
name = "to-tls-nopool"
bind = ["127.0.0.1:$RPN"]
mode = "http"
backend = "tls-origin-nopool"

[[backend]]
name = "origin"
mode = "http"
[[backend.server]]
name = "o"
address = "127.0.0.1:$O"

[[backend]]
name = "tls-origin"
mode = "http"
tls = { ca = "ca.pem", sni = "bench.test" }
[[backend.server]]
name = "o"
address = "127.0.0.1:$OT"

[[backend]]
name = "tls-origin-nopool"
mode = "http"
keep_alive = "server-close"
tls = { ca = "ca.pem", sni = "bench.test" }
[[backend.server]]
name = "o"
address = "127.0.0.1:$OT"
TOML
taskset -c 1 "$ROOT/target/release/ringproxy" -c "$RUN_DIR/ringproxy.toml" 2>"$RUN_DIR/ringproxy.log" &
rp_pid=$!; pids+=($rp_pid)

cat > "$RUN_DIR/haproxy.cfg" <<CFG
global
  nbthread 1
  maxconn 4000
  tune.ssl.default-dh-param 2048
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend tls
  bind 127.0.0.1:$HA ssl crt $RUN_DIR/haproxy.pem alpn http/1.1
  default_backend origin
frontend plain
  bind 127.0.0.1:$HAP
  default_backend origin
frontend to-tls
  bind 127.0.0.1:$HAB
  default_backend tls-origin
backend origin
  server o 127.0.0.1:$O
backend tls-origin
  server o 127.0.0.1:$OT ssl verify required ca-file $RUN_DIR/ca.pem sni str(bench.test)
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
  keepalive_requests 1000000;
  ssl_session_cache shared:P:10m;
  upstream o { server 127.0.0.1:$O; keepalive 64; }
  upstream ot { server 127.0.0.1:$OT; keepalive 64; }
  server {
    listen 127.0.0.1:$NG ssl;
    ssl_certificate $RUN_DIR/leaf.pem;
    ssl_certificate_key $RUN_DIR/leaf.key;
    location / { proxy_pass http://o; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
  server {
    listen 127.0.0.1:$NGP;
    location / { proxy_pass http://o; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
  server {
    listen 127.0.0.1:$NGB;
    location / {
      proxy_pass https://ot; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_ssl_server_name on; proxy_ssl_name bench.test; proxy_ssl_session_reuse on;
      proxy_ssl_verify on; proxy_ssl_trusted_certificate $RUN_DIR/ca.pem;
    }
  }
}
CFG
taskset -c 1 nginx -c "$RUN_DIR/nginx.conf" -p "$RUN_DIR" 2>>"$RUN_DIR/nginx-error.log" &
ng_pid=$!; pids+=($ng_pid)

for p in $O $OT $RP $RPB $RPN $RPP $HA $HAB $HAP $NG $NGB $NGP; do wait_port "$p"; done

# ab_run NAME PID URL CONC: prints "name rps mean_ms p99_ms cpu_per_1000".
ab_run() {
  local name=$1 pid=$2 url=$3 conc=$4 out t0 t1
  taskset -c 0 ab -q -n 200 -c "$conc" "$url" >/dev/null
  t0=$(cpu_ticks "$pid")
  out=$(taskset -c 0 ab -q -r -s 10 -n "$N" -c "$conc" "$url")
  t1=$(cpu_ticks "$pid")
  local failed; failed=$(awk '/^Failed requests/ { print $3 }' <<<"$out")
  [[ $failed == 0 ]] || echo "$name: $failed failed requests" >&2
  awk -v n="$name" -v t=$((t1 - t0)) -v N="$N" '
    /^Requests per second/ { r = $4 }
    /^Time per request/ && !m { m = $4 }
    /^ *99%/ { p = $2 }
    END { printf "%s %s %s %s %.4f\n", n, r, m, p, t / 100 / N * 1000 }' <<<"$out"
}

# wrk_run NAME PID URL: prints "name rps mean_ms p99_ms cpu_per_1000".
wrk_run() {
  local name=$1 pid=$2 url=$3 out t0 t1
  taskset -c 0 wrk -t1 -c64 -d1s "$url" >/dev/null
  t0=$(cpu_ticks "$pid")
  out=$(taskset -c 0 wrk -t1 -c64 -d"$DUR" --latency "$url")
  t1=$(cpu_ticks "$pid")
  awk -v n="$name" -v t=$((t1 - t0)) '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /^ *Latency / && !m { m = ms($2) }
    /^ *99%/ { p = ms($2) }
    /requests in/ { q = $1 }
    /^Requests\/sec/ { r = $2 }
    END { printf "%s %s %.3f %.3f %.4f\n", n, r, m, p, (q > 0 ? t / 100 / q * 1000 : 0) }' <<<"$out"
}

: > "$RUN_DIR/results.txt"
for rep in $(seq "$REPS"); do
  {
    ab_run "handshakes ringproxy" "$rp_pid" "https://127.0.0.1:$RP/" 32
    ab_run "handshakes haproxy" "$ha_pid" "https://127.0.0.1:$HA/" 32
    ab_run "handshakes nginx" "$ng_pid" "https://127.0.0.1:$NG/" 32
    wrk_run "keep-alive ringproxy" "$rp_pid" "https://127.0.0.1:$RP/"
    wrk_run "keep-alive haproxy" "$ha_pid" "https://127.0.0.1:$HA/"
    wrk_run "keep-alive nginx" "$ng_pid" "https://127.0.0.1:$NG/"
    wrk_run "plain-keep-alive ringproxy" "$rp_pid" "http://127.0.0.1:$RPP/"
    wrk_run "plain-keep-alive haproxy" "$ha_pid" "http://127.0.0.1:$HAP/"
    wrk_run "plain-keep-alive nginx" "$ng_pid" "http://127.0.0.1:$NGP/"
    ab_run "backend-one-shot ringproxy-pooled" "$rp_pid" "http://127.0.0.1:$RPB/" 1
    ab_run "backend-one-shot ringproxy-no-pool" "$rp_pid" "http://127.0.0.1:$RPN/" 1
    ab_run "backend-one-shot haproxy" "$ha_pid" "http://127.0.0.1:$HAB/" 1
    ab_run "backend-one-shot nginx" "$ng_pid" "http://127.0.0.1:$NGB/" 1
  } >> "$RUN_DIR/results.txt"
done

echo "## TLS (medians of $REPS; one proxy thread on CPU 1, clients on CPU 0)"
echo
awk "$AWK_MED"'
  { key = $1 " " $2; if (!(key in seen)) { seen[key] = 1; order[++n] = key }
    r[key] = r[key] " " $3; m[key] = m[key] " " $4; p[key] = p[key] " " $5; c[key] = c[key] " " $6 }
  END {
    print "| workload | system | req/s | mean ms | p99 ms | proxy CPU s per 1000 req |"
    print "|---|---|---:|---:|---:|---:|"
    for (i = 1; i <= n; i++) { k = order[i]; split(k, a, " ")
      printf "| %s | %s | %.0f | %.3f | %.2f | %.4f |\n", a[1], a[2], med(r[k]), med(m[k]), med(p[k]), med(c[k]) }
  }' "$RUN_DIR/results.txt" | tee "$RUN_DIR/tls.md"
echo
echo "handshakes: ab -n $N -c 32 (a full handshake per request); keep-alive: wrk -t1 -c64 -d$DUR (plain: over http);"
echo "backend-one-shot: ab -n $N -c 1, plain client, TLS origin (nginx), mean = latency per one-shot client."
echo "raw: $RUN_DIR" >&2
