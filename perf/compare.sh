#!/usr/bin/env bash
# perf/compare.sh - the one-command comparison: ringproxy against direct access, HAProxy
# and nginx, every workload in one run with the same pinning, repeated; prints one
# markdown table per workload and a table of the performance issue's goals (ratios taken
# within each repeat, pass/fail on their median).
#
# Systems (SYSTEMS, all by default), each one thread / worker / shard:
#   direct          the origin itself (the ceiling)
#   ringproxy       http mode, `shards = "auto"` under a one-CPU affinity mask = one shard
#   haproxy         HAProxy `mode http`, nbthread 1, default `http-reuse safe`
#   haproxy-always  the same with `http-reuse always`
#   nginx           nginx, one worker, upstream `keepalive 64`
#   ringproxy-tcp   tcp mode (splice), one shard
#   haproxy-tcp     HAProxy `mode tcp`, nbthread 1
# The origin is nginx (one worker) on two ports the proxies balance round-robin: GET /
# answers a 13-byte body, GET /1m.bin 1 MiB.
#
# Workloads (WORKLOADS, all by default) and the systems each runs against:
#   wrk-c64   wrk -t1 -c64, 13-byte bodies, keep-alive     direct ringproxy haproxy nginx
#   wrk-c256  wrk -t1 -c256, the same                        direct ringproxy haproxy nginx
#   ab-close  ab -c64 without -k: HTTP/1.0, a connection     direct ringproxy haproxy
#             per request                                    haproxy-always nginx
#   ab-ka     ab -k -c64: HTTP/1.0 keep-alive                direct ringproxy haproxy nginx
#   wrk-1m    wrk -t1 -c8 /1m.bin, http mode                 direct ringproxy haproxy nginx
#   tcp-1m    wrk -t1 -c8 /1m.bin through tcp mode           direct ringproxy-tcp haproxy-tcp
#
# Pinning: the load generator on CPU LOADGEN_CPU (1); the origin and every proxy on CPU
# SERVER_CPU (0). All systems run for the whole script; only one is under load at a time.
#
# Each run records req/s, MiB/s (response bytes with headers), p50/p99/p99.9 latency (wrk:
# a Lua done() hook, microsecond resolution; ab: p50/p99 from -e (microseconds), p99.9
# from the -g per-request times (whole milliseconds)), and the CPU of the proxy and of the
# origin: utime + stime from /proc/PID/stat of the process (all threads) and its children,
# before and after; reported as CPU microseconds per request and requests per CPU-second.
# Every workload x system runs REPS times; within a repeat the systems of a workload run
# one after the other, in an order rotated every repeat, so drift in background load is
# spread over all of them. Tables show medians (req/s with its min-max and half-range in %);
# goals compare ratios measured in the same repeat. Before each run the script waits (up to
# QUIET_BUDGET s in all) while the machine is busier than QUIET_MAX % of a core; every run
# records "noise", host CPU not used by the proxy, the origin or the load generator, and a
# run with more than NOISE_MAX % of a core of it is done again (NOISE_RETRIES times at most;
# the discarded runs are kept in RUN_DIR/noisy.csv).
#
# Usage, from any directory:
#   perf/compare.sh                                   # full run: REPS=3 DUR=5, ~9 min
#   QUICK=1 perf/compare.sh                           # smoke run: REPS=1 DUR=1, 1-2 min
#   WORKLOADS="wrk-c64 ab-close" SYSTEMS="ringproxy haproxy-always" perf/compare.sh
# Knobs: REPS, DUR (seconds per run), QUICK, WORKLOADS, SYSTEMS, PORT_OFFSET (added to every
#   port), LOADGEN_CPU, SERVER_CPU, SPLICE (ringproxy, default true), QUIET_MAX (25),
#   QUIET_BUDGET (60 per repeat), NOISE_MAX (25; rows whose median noise still exceeds it
#   are marked "!"), NOISE_RETRIES (3 per repeat), RUN_DIR, CARGO_LOCK and SKIP_BUILD
#   (perf/common.sh).
# Ports (+PORT_OFFSET): origin 9001 9002, haproxy 8101, haproxy-tcp 8111, haproxy-always
#   8121, nginx 8201, ringproxy 8300, ringproxy-tcp 8301. If one is taken the script stops
#   before starting anything.
# Installs wrk, ab, haproxy, nginx and curl if missing and builds the release binary
# (perf/common.sh). Output: the tables on stdout and in RUN_DIR/compare.md, every run's
# raw numbers in RUN_DIR/results.csv, logs and configurations in RUN_DIR. Every process
# it starts is stopped on exit, by its process group.
set -euo pipefail

ALL_WORKLOADS="wrk-c64 wrk-c256 ab-close ab-ka wrk-1m tcp-1m"
ALL_SYSTEMS="direct ringproxy haproxy haproxy-always nginx ringproxy-tcp haproxy-tcp"
declare -A WL_SYSTEMS=(
  [wrk-c64]="direct ringproxy haproxy nginx"
  [wrk-c256]="direct ringproxy haproxy nginx"
  [ab-close]="direct ringproxy haproxy haproxy-always nginx"
  [ab-ka]="direct ringproxy haproxy nginx"
  [wrk-1m]="direct ringproxy haproxy nginx"
  [tcp-1m]="direct ringproxy-tcp haproxy-tcp"
)

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then DUR=${DUR:-1}; REPS=${REPS:-1}; else DUR=${DUR:-5}; REPS=${REPS:-3}; fi
WORKLOADS=${WORKLOADS:-$ALL_WORKLOADS}
SYSTEMS=${SYSTEMS:-$ALL_SYSTEMS}
LOADGEN_CPU=${LOADGEN_CPU:-1}
SERVER_CPU=${SERVER_CPU:-0}
QUIET_MAX=${QUIET_MAX:-25}
QUIET_BUDGET=${QUIET_BUDGET:-$((REPS * 60))}
NOISE_MAX=${NOISE_MAX:-25}
NOISE_RETRIES=${NOISE_RETRIES:-$((REPS * 3))}

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "compare.sh: $*"; exit 1; }

[[ $DUR =~ ^[1-9][0-9]*$ && $REPS =~ ^[1-9][0-9]*$ ]] || die "DUR and REPS must be positive integers"
for w in $WORKLOADS; do [[ -n ${WL_SYSTEMS[$w]:-} ]] || die "unknown workload '$w' (known: $ALL_WORKLOADS)"; done
for s in $SYSTEMS; do [[ " $ALL_SYSTEMS " == *" $s "* ]] || die "unknown system '$s' (known: $ALL_SYSTEMS)"; done

# The plan: for each workload, the systems of SYSTEMS it concerns; USED: every system run.
declare -A PLAN USED
for w in $WORKLOADS; do
  for s in ${WL_SYSTEMS[$w]}; do
    [[ " $SYSTEMS " == *" $s "* ]] && { PLAN[$w]="${PLAN[$w]:-}${PLAN[$w]:+ }$s"; USED[$s]=1; }
  done
  [[ -n ${PLAN[$w]:-} ]] || log "workload $w: none of its systems is in SYSTEMS, skipped"
done
((${#USED[@]})) || die "nothing to run"

ANCHORS_NEEDED=0
# shellcheck source=perf/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

O=$PORT_OFFSET
declare -A SYS_PORT=(
  [direct]=$((9001 + O)) [haproxy]=$((8101 + O)) [haproxy-tcp]=$((8111 + O))
  [haproxy-always]=$((8121 + O)) [nginx]=$((8201 + O)) [ringproxy]=$((8300 + O))
  [ringproxy-tcp]=$((8301 + O))
)
ORIGIN_PORT2=$((9002 + O))
declare -A SYS_LABEL=(
  [direct]="direct (origin)" [ringproxy]="ringproxy" [haproxy]="HAProxy"
  [haproxy-always]="HAProxy, http-reuse always" [nginx]="nginx, keepalive 64"
  [ringproxy-tcp]="ringproxy tcp" [haproxy-tcp]="HAProxy mode tcp"
)

# Refuse before starting anything if a port is taken.
busy=()
for p in "${SYS_PORT[direct]}" "$ORIGIN_PORT2" $(for s in "${!USED[@]}"; do [[ $s == direct ]] || echo "${SYS_PORT[$s]}"; done); do
  if ss -Hltn "( sport = :$p )" | grep -q .; then busy+=("$p"); fi
done
((${#busy[@]} == 0)) || die "port(s) ${busy[*]} already in use; stop what listens there or set PORT_OFFSET (e.g. PORT_OFFSET=10000)"

RUN_DIR=${RUN_DIR:-/tmp/ringproxy-compare.$(date +%Y%m%d-%H%M%S).$$}
mkdir -p "$RUN_DIR"/{raw,www,origin}
RUN_DIR=$(cd "$RUN_DIR" && pwd)
chmod 755 "$RUN_DIR" "$RUN_DIR/www"     # the nginx workers (user nobody) read /1m.bin
RESULTS=$RUN_DIR/results.csv
HZ=$(getconf CLK_TCK)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ------------------------------------------------------------------- processes --
STARTED=()                # process group ids, one per started server
declare -A SYS_PID        # system -> pid of its (leader) process; origin under "origin"

cleanup() {
  local pg
  for pg in "${STARTED[@]}"; do kill -TERM -- "-$pg" 2>/dev/null || true; done
  for pg in "${STARTED[@]}"; do
    for _ in $(seq 30); do kill -0 -- "-$pg" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pg" 2>/dev/null || true
  done
  STARTED=()
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CMD...: CMD pinned to SERVER_CPU, in a new session (its own process group,
# stopped as one by cleanup); its pid in SYS_PID[NAME], its output in RUN_DIR/NAME.log.
start() {
  local name=$1; shift
  setsid taskset -c "$SERVER_CPU" "$@" > "$RUN_DIR/$name.log" 2>&1 < /dev/null &
  local pid=$!
  STARTED+=("$pid")
  SYS_PID[$name]=$pid
}

# ready NAME PORT: NAME listens on PORT, leads its process group and serves / (13 bytes)
# and /1m.bin (1 MiB).
ready() {
  local name=$1 port=$2 pid=${SYS_PID[$1]} body size
  wait_port "$port"
  kill -0 "$pid" 2>/dev/null || die "$name exited (see $RUN_DIR/$name.log)"
  [[ $(awk '{ sub(/^.*\) /, ""); print $3 }' "/proc/$pid/stat") == "$pid" ]] ||
    die "$name: pid $pid does not lead its process group"
  body=$(curl -s --max-time 2 "http://127.0.0.1:$port/" || true)
  size=$(curl -s --max-time 5 -o /dev/null -w '%{size_download}' "http://127.0.0.1:$port/1m.bin" || true)
  [[ $body == "Hello, world!" && $size == 1048576 ]] ||
    die "$name on :$port answers '$body' and $size bytes for /1m.bin (see $RUN_DIR/$name.log)"
}

start_origin() {
  local d=$RUN_DIR/origin
  head -c 1048576 /dev/urandom > "$RUN_DIR/www/1m.bin"
  chmod 644 "$RUN_DIR/www/1m.bin"
  local server="" port
  for port in "${SYS_PORT[direct]}" "$ORIGIN_PORT2"; do
    server+="
    server {
        listen 127.0.0.1:$port backlog=4096;
        root $RUN_DIR/www;
        location = / { default_type text/plain; return 200 \"Hello, world!\"; }
        location /   { }
    }"
  done
  cat > "$d/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    server_tokens off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65s;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path $d/client; proxy_temp_path $d/proxy; fastcgi_temp_path $d/fastcgi;
    uwsgi_temp_path $d/uwsgi; scgi_temp_path $d/scgi;
$server
}
EOF
  nginx -t -q -p "$d/" -c "$d/nginx.conf" -e stderr || die "origin: invalid nginx configuration"
  start origin nginx -p "$d/" -c "$d/nginx.conf" -e stderr
  SYS_PID[direct]=${SYS_PID[origin]}
  ready origin "${SYS_PORT[direct]}"
  ready origin "$ORIGIN_PORT2"
}

# haproxy_config PORT MODE OPTION: one thread, round-robin over the two origin ports.
haproxy_config() {
  cat <<EOF
global
    nbthread 1
    maxconn 8000
defaults
    mode $2
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    $3
frontend fe
    bind 127.0.0.1:$1 backlog 4096
    default_backend be
backend be
    balance roundrobin
    server s1 127.0.0.1:${SYS_PORT[direct]}
    server s2 127.0.0.1:$ORIGIN_PORT2
EOF
}

nginx_proxy_config() {
  local d=$RUN_DIR/nginx
  cat <<EOF
daemon off;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    server_tokens off;
    tcp_nodelay on;
    keepalive_timeout 65s;
    keepalive_requests 1000000;
    client_body_temp_path $d/client; proxy_temp_path $d/proxy; fastcgi_temp_path $d/fastcgi;
    uwsgi_temp_path $d/uwsgi; scgi_temp_path $d/scgi;
    upstream origins {
        server 127.0.0.1:${SYS_PORT[direct]};
        server 127.0.0.1:$ORIGIN_PORT2;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:${SYS_PORT[nginx]} backlog=4096;
        location / {
            proxy_pass http://origins;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_max_temp_file_size 0;   # 1 MiB bodies: never through a temp file
        }
    }
}
EOF
}

start_system() {
  local s=$1 port=${SYS_PORT[$1]} cfg
  case $s in
    direct) return 0 ;;
    ringproxy|ringproxy-tcp)
      cfg=$RUN_DIR/$s.toml
      if [[ $s == ringproxy ]]; then
        PORT=$port bench_config http "max_keep_alive_requests = 0   # no per-connection request limit" > "$cfg"
      else
        PORT=$port bench_config tcp > "$cfg"
      fi
      "$ROOT/target/release/ringproxy" check -c "$cfg" > /dev/null || die "$s: invalid configuration $cfg"
      start "$s" "$ROOT/target/release/ringproxy" -c "$cfg" ;;
    haproxy|haproxy-always|haproxy-tcp)
      cfg=$RUN_DIR/$s.cfg
      case $s in
        haproxy)        haproxy_config "$port" http "http-reuse safe   # the default" ;;
        haproxy-always) haproxy_config "$port" http "http-reuse always" ;;
        haproxy-tcp)    haproxy_config "$port" tcp "" ;;
      esac > "$cfg"
      haproxy -q -c -f "$cfg" || die "$s: invalid configuration $cfg"
      start "$s" haproxy -f "$cfg" -db ;;
    nginx)
      mkdir -p "$RUN_DIR/nginx"
      cfg=$RUN_DIR/nginx/nginx.conf
      nginx_proxy_config > "$cfg"
      nginx -t -q -p "$RUN_DIR/nginx/" -c "$cfg" -e stderr || die "nginx: invalid configuration $cfg"
      start nginx nginx -p "$RUN_DIR/nginx/" -c "$cfg" -e stderr ;;
  esac
  ready "$s" "$port"
}

# --------------------------------------------------------------------- accounting --
# host_ticks: "busy irq+softirq steal" ticks of the whole machine from /proc/stat, where
# busy = user + nice + system + irq + softirq. Without IRQ_TIME_ACCOUNTING (tick-based
# accounting) a tick that lands in a softirq, such as loopback TCP delivery, counts as
# softirq here and in the stime of the process it interrupted: busy is what processes'
# utime + stime add up to, plus softirq work done while idle.
host_ticks() {
  local _cpu user nice sys _idle _iowait irq softirq steal _rest
  read -r _cpu user nice sys _idle _iowait irq softirq steal _rest < /proc/stat
  echo "$((user + nice + sys + irq + softirq)) $((irq + softirq)) $steal"
}

# quiet_gap: half a second between runs; while the machine is busier than QUIET_MAX % of
# a core (our servers idle meanwhile), wait, up to QUIET_BUDGET seconds over the script.
QUIET_WAITED=0
quiet_gap() {
  local a b
  while :; do
    read -r -a a <<< "$(host_ticks)"; sleep 0.5; read -r -a b <<< "$(host_ticks)"
    (( (b[0] - a[0] + b[2] - a[2]) * 200 / HZ <= QUIET_MAX || QUIET_BUDGET <= 0 )) && return 0
    QUIET_BUDGET=$((QUIET_BUDGET - 1)); QUIET_WAITED=$((QUIET_WAITED + 1)); sleep 0.5
  done
}

# children_cpu FILE: user + sys seconds of this shell's waited-for children, from the
# output of `times` saved in FILE (`times` must run in this shell, not in a $(...)).
children_cpu() {
  awk 'NR == 2 { for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); t += a[1] * 60 + a[2] } print t }' "$1"
}

# ------------------------------------------------------------------- load generators --
LUA=$RUN_DIR/summary.lua
cat > "$LUA" <<'EOF'
-- perf/compare.sh: wrk's summary as one machine-readable line (latencies in microseconds).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("COMPARE %d %d %d %d %.1f %.1f %.1f\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
EOF

# run_load WORKLOAD PORT OUT: one bounded load-generator run on LOADGEN_CPU; its output in
# OUT.txt (ab: also OUT.pct, the -e percentiles, and OUT.tsv, the -g per-request times).
run_load() {
  local w=$1 url="http://127.0.0.1:$2/" out=$3
  local lg=(timeout -k 2 $((DUR + 30)) taskset -c "$LOADGEN_CPU")
  # ab: -t ends the run; -n (after -t, which would set 50000) only bounds its memory.
  local ab=(ab -q -r -s 10 -t "$DUR" -n $((DUR * 250000)) -c 64 -e "$out.pct" -g "$out.tsv")
  case $w in
    wrk-c64)  "${lg[@]}" wrk -t1 -c64 -d"${DUR}s" -s "$LUA" "$url" ;;
    wrk-c256) "${lg[@]}" wrk -t1 -c256 -d"${DUR}s" -s "$LUA" "$url" ;;
    wrk-1m|tcp-1m) "${lg[@]}" wrk -t1 -c8 -d"${DUR}s" -s "$LUA" "${url}1m.bin" ;;
    ab-close) "${lg[@]}" "${ab[@]}" "$url" ;;
    ab-ka)    "${lg[@]}" "${ab[@]}" -k "$url" ;;
  esac > "$out.txt" 2>&1
}

# parse WORKLOAD OUT: "requests wall_s bytes errors p50_ms p99_ms p999_ms" (NA if absent).
parse() {
  local w=$1 out=$2
  if [[ $w == ab-* ]]; then
    local pct="NA NA" p999=NA
    [[ -s $out.pct ]] && pct=$(awk -F, '$1 == 50 { a = $2 } $1 == 99 { b = $2 }
      END { print (a == "" ? "NA" : a), (b == "" ? "NA" : b) }' "$out.pct")
    # -g: tab-separated, the 5th column the request's total time in whole ms; nearest rank.
    [[ -s $out.tsv ]] && p999=$(tail -n +2 "$out.tsv" | cut -f5 | sort -n |
      awk '{ v[NR] = $1 } END { if (!NR) { print "NA"; exit } i = int(NR * 0.999); if (i < NR * 0.999) i++; print v[i < 1 ? 1 : i] }')
    rm -f "$out.tsv"     # one line per request: tens of MB; its p99.9 is in results.csv
    awk -v pct="$pct" -v p999="$p999" '
      /^Complete requests:/ { n = $3 } /^Failed requests:/ { e += $3 } /^Non-2xx responses:/ { e += $3 }
      /^Time taken for tests:/ { t = $5 } /^Total transferred:/ { b = $3 }
      END { print (n ? n : 0), (t ? t : "NA"), (b ? b : 0), e + 0, pct, p999 }' "$out.txt"
  else
    awk '$1 == "COMPARE" { found = 1; printf "%s %.6f %s %s %.3f %.3f %.3f\n", $2, $3 / 1e6, $4, $5, $6 / 1000, $7 / 1000, $8 / 1000 }
      END { if (!found) print "0 NA 0 0 NA NA NA" }' "$out.txt"
  fi
}

echo "rep,workload,system,requests,wall_s,rps,mib_s,p50_ms,p99_ms,p999_ms,errors,proxy_cpu_s,origin_cpu_s,loadgen_cpu_s,noise_cpu_s,softirq_s,steal_s" > "$RESULTS"
head -n 1 "$RESULTS" > "$RUN_DIR/noisy.csv"

# run_one REP WORKLOAD SYSTEM: one measured run, appended to results.csv.
run_one() {
  local r=$1 w=$2 s=$3 out=$RUN_DIR/raw/$2.$3.$1 rc=0
  local pid=${SYS_PID[$s]} opid=${SYS_PID[origin]} p0=0 p1=0 o0 o1 h0 h1 t0 t1
  quiet_gap
  [[ $s == direct ]] || p0=$(cpu_ticks "$pid")
  o0=$(cpu_ticks "$opid"); h0=$(host_ticks); t0=$EPOCHREALTIME
  times > "$out.times0"
  run_load "$w" "${SYS_PORT[$s]}" "$out" || rc=$?
  times > "$out.times1"
  t1=$EPOCHREALTIME; h1=$(host_ticks); o1=$(cpu_ticks "$opid")
  [[ $s == direct ]] || p1=$(cpu_ticks "$pid")
  ((rc == 0)) || log "  warning: $w/$s/rep $r: load generator exit code $rc (see $out.txt)"
  awk -v r="$r" -v w="$w" -v s="$s" -v parsed="$(parse "$w" "$out")" -v hz="$HZ" \
      -v p=$((p1 - p0)) -v o=$((o1 - o0)) -v h0="$h0" -v h1="$h1" -v t0="$t0" -v t1="$t1" \
      -v c0="$(children_cpu "$out.times0")" -v c1="$(children_cpu "$out.times1")" 'BEGIN {
    split(parsed, f, " "); split(h0, a, " "); split(h1, b, " ")
    n = f[1]; wall = f[2]; rps = (wall + 0 > 0) ? n / wall : "NA"; mib = (wall + 0 > 0) ? f[3] / 1048576 / wall : "NA"
    pc = p / hz; oc = o / hz; lg = c1 - c0; steal = (b[3] - a[3]) / hz
    noise = (b[1] - a[1]) / hz - pc - oc - lg; if (noise < 0) noise = 0; noise += steal
    printf "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%.2f,%.2f,%.2f,%.2f,%.2f,%.2f\n", r, w, s, n, wall,
      (rps == "NA" ? rps : sprintf("%.1f", rps)), (mib == "NA" ? mib : sprintf("%.2f", mib)),
      f[5], f[6], f[7], f[4], pc, oc, lg, noise, (b[2] - a[2]) / hz, steal }' >> "$RESULTS"
  rm -f "$out.times0" "$out.times1"
  tail -n 1 "$RESULTS" | awk -F, '{ printf "  rep %s %-8s %-14s %9s req/s  p99 %s ms  %s MiB/s  proxy CPU %s s  noise %s s  errors %s\n",
    $1, $2, $3, $6, $9, $7, $12, $15, $11 }' >&2
}

# --------------------------------------------------------------------------- main --
T_START=$SECONDS
runs=0; for w in "${!PLAN[@]}"; do for _ in ${PLAN[$w]}; do runs=$((runs + 1)); done; done
log "run dir: $RUN_DIR"
log "$runs runs per repeat x REPS=$REPS, DUR=${DUR}s: ~$(( (runs * REPS * (DUR + 2) + 30) / 60 + 1 )) min"

start_origin
for s in $ALL_SYSTEMS; do
  [[ -n ${USED[$s]:-} && $s != direct ]] || continue
  start_system "$s"
  log "started $s on :${SYS_PORT[$s]} (pid ${SYS_PID[$s]}, CPU $SERVER_CPU)"
done

# Warm-up (not recorded): a second of keep-alive load through every system, then each
# system's CPU while idle, which should be ~0 (every one shares SERVER_CPU).
for s in $ALL_SYSTEMS; do
  [[ -n ${USED[$s]:-} ]] || continue
  timeout -k 2 10 taskset -c "$LOADGEN_CPU" wrk -t1 -c64 -d1s "http://127.0.0.1:${SYS_PORT[$s]}/" > /dev/null 2>&1 || true
done
declare -A IDLE0
for s in origin "${!USED[@]}"; do [[ $s == direct ]] || IDLE0[$s]=$(cpu_ticks "${SYS_PID[$s]}"); done
sleep 2
idle=""
for s in origin $ALL_SYSTEMS; do
  [[ -n ${IDLE0[$s]:-} ]] || continue
  t=$(( ($(cpu_ticks "${SYS_PID[$s]}") - ${IDLE0[$s]}) * 100 / HZ / 2 ))
  idle+=" $s=${t}%"
  ((t <= 5)) || log "warning: $s uses ${t}% of a CPU while idle"
done

# noise_pct: the last run's noise in % of one core.
noise_pct() { tail -n 1 "$RESULTS" | awk -F, '{ printf "%d", ($5 + 0 > 0) ? $15 / $5 * 100 : 0 }'; }

# Repeats outermost; within a repeat, each workload's systems in turn, rotated by repeat.
NOISY_RUNS=0
for r in $(seq "$REPS"); do
  for w in $WORKLOADS; do
    [[ -n ${PLAN[$w]:-} ]] || continue
    read -r -a sys <<< "${PLAN[$w]}"
    for i in "${!sys[@]}"; do
      s=${sys[(i + r - 1) % ${#sys[@]}]}
      run_one "$r" "$w" "$s"
      while (( $(noise_pct) > NOISE_MAX && NOISE_RETRIES > 0 )); do
        NOISE_RETRIES=$((NOISE_RETRIES - 1)); NOISY_RUNS=$((NOISY_RUNS + 1))
        log "  noise above ${NOISE_MAX}% of a core: again ($NOISE_RETRIES more allowed)"
        tail -n 1 "$RESULTS" >> "$RUN_DIR/noisy.csv"; sed -i '$ d' "$RESULTS"
        run_one "$r" "$w" "$s"
      done
    done
  done
done
RUNTIME=$((SECONDS - T_START))

# ------------------------------------------------------------------------- report --
order=""
for w in $WORKLOADS; do [[ -z ${PLAN[$w]:-} ]] || order+="$w=${PLAN[$w]// /,} "; done
labels=""
for s in $ALL_SYSTEMS; do labels+="$s=${SYS_LABEL[$s]// /_} "; done
if grep -qs '^CONFIG_IRQ_TIME_ACCOUNTING=y' "/boot/config-$(uname -r)"; then
  irq_note="this kernel accounts softirq time apart (IRQ_TIME_ACCOUNTING): loopback TCP
work done in softirq is in no process's CPU."
else
  irq_note="with this kernel's tick-based accounting, softirq work (loopback TCP delivery)
counts for the process it interrupted."
fi
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$ROOT" diff --quiet HEAD 2>/dev/null || commit+=" (with uncommitted changes)"

{
  echo "## ringproxy vs direct, HAProxy and nginx ($(date +%Y-%m-%d))"
  echo
  echo "- machine: $(nproc) CPUs, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(uname -sr)"
  echo "- ringproxy $commit (splice = $SPLICE), $(haproxy -v | awk 'NR == 1 { print "HAProxy " $3 }'), $(nginx -v 2>&1 | sed 's|.*nginx/|nginx |'), wrk $(wrk -v 2>&1 | awk 'NR == 1 { print $2 }'), ab $(ab -V | awk 'NR == 1 { print $5 }')"
  echo "- pinning: load generator on CPU $LOADGEN_CPU; origin (nginx, 1 worker) and every proxy (1 thread/worker/shard) on CPU $SERVER_CPU"
  echo "- REPS=$REPS, DUR=${DUR}s per run; runtime ${RUNTIME} s; waited ${QUIET_WAITED} s for a quiet machine; $NOISY_RUNS noisy runs done again; idle CPU after warm-up:$idle"
  awk -F, "$AWK_MED"'
    function minv(s,   n, a, i, m) { n = split(s, a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 < m + 0) m = a[i]; return m }
    function maxv(s,   n, a, i, m) { n = split(s, a, " "); m = a[1]; for (i = 2; i <= n; i++) if (a[i] + 0 > m + 0) m = a[i]; return m }
    function add(k, v) { if (v != "NA" && v != "") L[k] = L[k] " " v }
    function fmt(k, f) { return (L[k] == "") ? "–" : sprintf(f, med(L[k])) }
    NR == 1 { next }
    {
      r = $1; w = $2; s = $3; k = w SUBSEP s; reps[r] = 1
      add(k SUBSEP "rps", $6); add(k SUBSEP "mib", $7)
      add(k SUBSEP "p50", $8); add(k SUBSEP "p99", $9); add(k SUBSEP "p999", $10)
      if ($4 > 0 && $12 > 0) { add(k SUBSEP "cpr", $12 / $4 * 1e6); add(k SUBSEP "rpc", $4 / $12); V[r, w, s, "rpc"] = $4 / $12 }
      if ($4 > 0 && $13 > 0) add(k SUBSEP "ocpr", $13 / $4 * 1e6)
      if ($5 + 0 > 0) add(k SUBSEP "noise", $15 / $5 * 100)
      if ($9 != "NA") V[r, w, s, "p99"] = $9
      if ($7 != "NA") V[r, w, s, "mib"] = $7
      err[k] += $11
    }
    # goal(label, workload, metric, a, b, op, target): the ratio metric(a) / metric(b)
    # in each repeat; its median decides.
    function goal(label, w, m, a, b, op, target,   r, x, list, n, verdict) {
      list = ""; n = 0
      for (r in reps)
        if (((r, w, a, m) in V) && ((r, w, b, m) in V) && V[r, w, b, m] > 0) { x = V[r, w, a, m] / V[r, w, b, m]; list = list " " x; n++ }
      if (!n) { printf "| %s | not measured | | %s | – |\n", label, (op == "" ? "" : op " " target); return }
      x = med(list)
      verdict = (op == "") ? "(reference)" : ((op == "≥" ? x >= target : x <= target) ? "pass" : "**fail**")
      printf "| %s | %.2f | %s | %s | %s |\n", label, x, (n > 1 ? sprintf("%.2f–%.2f", minv(list), maxv(list)) : "–"),
        (op == "" ? "–" : op " " sprintf("%.2f", target)), verdict
    }
    END {
      title["wrk-c64"] = "HTTP keep-alive, 13-byte body: `wrk -t1 -c64`"
      title["wrk-c256"] = "HTTP keep-alive, 13-byte body: `wrk -t1 -c256`"
      title["ab-close"] = "No client keep-alive, HTTP/1.0: `ab -c64` (a connection per request)"
      title["ab-ka"] = "HTTP/1.0 keep-alive: `ab -k -c64`"
      title["wrk-1m"] = "1 MiB responses, http mode: `wrk -t1 -c8 /1m.bin`"
      title["tcp-1m"] = "1 MiB responses, tcp mode: `wrk -t1 -c8 /1m.bin`"
      n = split(labels, lb, " "); for (i = 1; i <= n; i++) { split(lb[i], kv, "="); gsub("_", " ", kv[2]); label[kv[1]] = kv[2] }
      nw = split(order, wl, " ")
      for (i = 1; i <= nw; i++) {
        split(wl[i], kv, "="); w = kv[1]; ns = split(kv[2], sy, ",")
        printf "\n### %s\n\n", title[w]
        print "| system | req/s | req/s min–max (±%) | p50 ms | p99 ms | p99.9 ms | MiB/s | proxy CPU µs/req | req per proxy CPU-s | origin CPU µs/req | noise % | errors |"
        print "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        for (j = 1; j <= ns; j++) {
          s = sy[j]; k = w SUBSEP s; l = L[k SUBSEP "rps"]
          spread = "–"
          if (split(l, tmp, " ") > 1 && med(l) > 0)
            spread = sprintf("%.0f–%.0f (±%.1f%%)", minv(l), maxv(l), (maxv(l) - minv(l)) / 2 / med(l) * 100)
          nz = fmt(k SUBSEP "noise", "%.0f"); if (L[k SUBSEP "noise"] != "" && med(L[k SUBSEP "noise"]) > noisemax) nz = nz " !"
          printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |\n", label[s], fmt(k SUBSEP "rps", "%.0f"), spread,
            fmt(k SUBSEP "p50", "%.3f"), fmt(k SUBSEP "p99", "%.3f"), fmt(k SUBSEP "p999", (w ~ /^ab-/) ? "%.0f" : "%.3f"), fmt(k SUBSEP "mib", "%.1f"),
            fmt(k SUBSEP "cpr", "%.1f"), fmt(k SUBSEP "rpc", "%.0f"), fmt(k SUBSEP "ocpr", "%.1f"), nz, err[k]
        }
      }
      print "\n### Goals (ratios within each repeat; the median decides)\n"
      print "| goal | measured | range over repeats | target | result |"
      print "|---|---:|---:|---:|---|"
      goal("wrk -c64: ringproxy req per CPU-s ÷ HAProxy", "wrk-c64", "rpc", "ringproxy", "haproxy", "≥", 1.5)
      goal("wrk -c64: ringproxy req per CPU-s ÷ nginx", "wrk-c64", "rpc", "ringproxy", "nginx", "≥", 1.2)
      goal("wrk -c64: ringproxy p99 ÷ HAProxy p99", "wrk-c64", "p99", "ringproxy", "haproxy", "≤", 1.0)
      goal("wrk -c256: ringproxy req per CPU-s ÷ HAProxy", "wrk-c256", "rpc", "ringproxy", "haproxy", "≥", 1.5)
      goal("wrk -c256: ringproxy req per CPU-s ÷ nginx", "wrk-c256", "rpc", "ringproxy", "nginx", "≥", 1.2)
      goal("wrk -c256: ringproxy p99 ÷ HAProxy p99", "wrk-c256", "p99", "ringproxy", "haproxy", "≤", 1.0)
      goal("ab -c64, no keep-alive: ringproxy req per CPU-s ÷ HAProxy http-reuse always", "ab-close", "rpc", "ringproxy", "haproxy-always", "≥", 1.3)
      goal("1 MiB, http mode: ringproxy MiB/s ÷ direct", "wrk-1m", "mib", "ringproxy", "direct", "≥", 0.6)
      goal("1 MiB, tcp mode: ringproxy tcp MiB/s ÷ direct", "tcp-1m", "mib", "ringproxy-tcp", "direct", "≥", 0.9)
      goal("ab -k -c64: ringproxy req per CPU-s ÷ HAProxy", "ab-ka", "rpc", "ringproxy", "haproxy", "", 0)
      goal("1 MiB, tcp mode: ringproxy tcp MiB/s ÷ HAProxy mode tcp", "tcp-1m", "mib", "ringproxy-tcp", "haproxy-tcp", "", 0)
    }' order="$order" labels="$labels" noisemax="$NOISE_MAX" "$RESULTS"
  cat <<EOF

Medians over REPS=$REPS runs of DUR=${DUR}s each. req/s min–max: the extremes over the
repeats, ± half their range relative to the median. Latency: wrk from a Lua done() hook
(µs resolution); ab's p50/p99 from -e (µs), its p99.9 from -g (whole ms). MiB/s counts
response bytes with headers. CPU: utime + stime from /proc/PID/stat of the proxy process
(all threads) and its children (nginx's worker), before and after each run;
$irq_note
noise %: machine CPU in the run not used by the proxy, the origin or the load generator,
plus steal, in % of one core ("!" above NOISE_MAX=$NOISE_MAX %).
EOF
} | tee "$RUN_DIR/compare.md"
echo
echo "raw results: $RESULTS (tables: $RUN_DIR/compare.md)"
