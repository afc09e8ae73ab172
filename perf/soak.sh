#!/usr/bin/env bash
# perf/soak.sh - the soak test (reliability issue): ringproxy under DURATION (30 minutes by
# default) of mixed, moderate traffic while one origin flaps; samples the proxy's RSS, fd
# count and statistics every SAMPLE_INTERVAL s; at the end prints a summary (requests per
# traffic kind, errors by cause from the load tools and from the proxy, RSS and fds at
# start / after warm-up / end) and a leak verdict, and exits 1 if it finds a leak (or the
# proxy died, panicked or did not stop cleanly).
#
# What runs (ports + PORT_OFFSET):
#   o1 :9501, o2 :9502   built-in origins (`ringproxy origin`); o2 flaps: every FLAP_PERIOD s
#                        it is killed (SIGKILL and SIGTERM in turn) and started again
#                        FLAP_DOWN s later
#   ws :9503             perf/soak.py ws-origin: 101 to `Upgrade: websocket`, then echo
#   ringproxy            shards "auto"; http frontend "web" :8500 (backend app = o1, o2; route
#                        /ws/ -> backend ws), tcp frontend "tcp" :8501 (backend tcpapp = o1,
#                        o2); http/tcp health checks every second (fall 2, rise 2),
#                        shutdown-sessions on marked down, retries; [admin] listen :8590
#                        (/stats.json) and socket; JSON access log into a FIFO read by
#                        perf/soak.py accesslog (status x termination counts)
# Traffic, all at once for DURATION, deliberately far from saturation:
#   wrk-http     wrk -t1 -c$WRK_HTTP_CONNS keep-alive on web, each connection pausing
#                WRK_HTTP_DELAY_MS between requests
#   wrk-tcp      wrk -t1 -c$WRK_TCP_CONNS keep-alive through the tcp frontend (pause WRK_TCP_DELAY_MS)
#   ab-close     ab -c$AB_C -n$AB_N (HTTP/1.0, a connection per request), every AB_PAUSE s
#   large-*      curl GET /bytes/1048576 through web and through tcp in turn, LARGE_PAUSE s apart
#   upgrade*     UPGRADE_WORKERS python clients: upgrade through web (101), 5-40 echo
#                messages, half-close; one long-lived tunnel (30 messages 2 s apart)
#   slow         python: trickled request heads, slow readers (8 KiB receive buffer, ~3 s per
#                MiB; http and tcp), a slow 64 KiB upload, idlers (8 s between requests,
#                then past the keep-alive timeout), a stalled head (408 expected), clients
#                leaving mid-response (http and tcp)
#
# Leak verdict: after the load and a cool-down (until sockets and other descriptors are back
# within FD_SLACK of their baseline and no session is open, COOLDOWN_MAX s at most), the
# proxy's sockets and its descriptors other than pipes must be within FD_SLACK of the
# baseline taken before the load, and no session open; its pipes (the splice relays'
# per-shard cache of empty pipes, never shrunk) and RSS must not grow steadily after
# warm-up (WARMUP s, default a fifth of the run, at least 60): the least-squares slope of
# the second half of the load, projected over the whole time after warm-up, and the rise
# from the first to the last quarter after warm-up (medians) must not both exceed PIPE_SLACK pipe fds, or for RSS
# max(RSS_SLACK_KIB, RSS_SLACK_PCT % of the RSS after warm-up). The proxy must also stop cleanly (exit 0) and not panic.
#
# Usage, from any directory:
#   perf/soak.sh                         # 30 minutes (plus ~1 minute of setup and cool-down)
#   DURATION=3m perf/soak.sh             # a short run (s, m or h; a bare number is seconds)
#   PORT_OFFSET=10000 SKIP_BUILD=1 perf/soak.sh
# Knobs: DURATION, WARMUP, SAMPLE_INTERVAL (10), FLAP_PERIOD (30; 0 = no flapping),
#   FLAP_DOWN (10), COOLDOWN_MAX (90), FD_SLACK (4), PIPE_SLACK (16), RSS_SLACK_KIB (2048), RSS_SLACK_PCT (5),
#   WRK_HTTP_CONNS (4), WRK_HTTP_DELAY_MS (2), WRK_TCP_CONNS (2), WRK_TCP_DELAY_MS (5),
#   AB_C (2), AB_N (200), AB_PAUSE (1), LARGE_PAUSE (0.25), UPGRADE_WORKERS (4), OUT_DIR,
#   BENCH_LOCK (/tmp/bench.lock), PORT_OFFSET, SKIP_BUILD, CARGO_LOCK (/tmp/cargo.lock).
# The whole run holds flock BENCH_LOCK (other benchmarks on this machine take it too); the
# build holds CARGO_LOCK. Installs wrk, ab, curl (perf/common.sh) and gnuplot-nox if missing.
# Output in OUT_DIR (default perf/out/soak-YYYYmmdd-HHMMSS, ignored by git): summary.md,
# samples.csv (every sample), rss-fds.png (RSS, fds, request and error rates over time),
# rates.csv, events.log (phases, flaps), soak.toml, stats-*.json, metrics-end.txt,
# accesslog.json, load/ (the load tools' output), logs/ (every process's output).
# Every process it starts runs in a session of its own, its pid recorded; on exit only
# those process groups are stopped.
set -euo pipefail

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "soak.sh: $*"; exit 1; }

seconds() { # 30m | 90s | 1h | 120 -> seconds
  [[ $1 =~ ^([0-9]+)(s|m|h)?$ ]] || die "bad duration '$1' (e.g. 30m, 90s, 1h)"
  local n=${BASH_REMATCH[1]}
  case ${BASH_REMATCH[2]} in m) n=$((n * 60)) ;; h) n=$((n * 3600)) ;; esac
  echo "$n"
}

DURATION=${DURATION:-30m}
SECS=$(seconds "$DURATION")
((SECS >= 60)) || die "DURATION must be at least 1m"
WARMUP=$(seconds "${WARMUP:-$(( SECS / 5 > 60 ? SECS / 5 : 60 ))}")
((WARMUP < SECS)) || die "WARMUP ($WARMUP s) must be shorter than DURATION ($SECS s)"
SAMPLE_INTERVAL=${SAMPLE_INTERVAL:-10}
FLAP_PERIOD=${FLAP_PERIOD:-30}
FLAP_DOWN=${FLAP_DOWN:-10}
((FLAP_PERIOD == 0 || FLAP_DOWN < FLAP_PERIOD)) || die "FLAP_DOWN must be shorter than FLAP_PERIOD"
COOLDOWN_MAX=${COOLDOWN_MAX:-90}
FD_SLACK=${FD_SLACK:-4}
PIPE_SLACK=${PIPE_SLACK:-16}
RSS_SLACK_KIB=${RSS_SLACK_KIB:-2048}
RSS_SLACK_PCT=${RSS_SLACK_PCT:-5}
WRK_HTTP_CONNS=${WRK_HTTP_CONNS:-4}
WRK_HTTP_DELAY_MS=${WRK_HTTP_DELAY_MS:-2}
WRK_TCP_CONNS=${WRK_TCP_CONNS:-2}
WRK_TCP_DELAY_MS=${WRK_TCP_DELAY_MS:-5}
AB_C=${AB_C:-2}
AB_N=${AB_N:-200}
AB_PAUSE=${AB_PAUSE:-1}
LARGE_PAUSE=${LARGE_PAUSE:-0.25}
UPGRADE_WORKERS=${UPGRADE_WORKERS:-4}
BENCH_LOCK=${BENCH_LOCK:-/tmp/bench.lock}
CARGO_LOCK=${CARGO_LOCK:-/tmp/cargo.lock}

ANCHORS_NEEDED=0
# shellcheck source=perf/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"   # tools, build, PORT_OFFSET, wait_port

command -v python3 >/dev/null || die "python3 is needed"
if ! command -v gnuplot >/dev/null; then
  log "installing gnuplot-nox (for the plot)"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnuplot-nox >/dev/null; }; then
    log "warning: gnuplot-nox could not be installed: no plot"
  fi
fi

BIN=$ROOT/target/release/ringproxy
PY=$HERE/soak.py
[[ -x $BIN ]] || die "$BIN not built"
O=$PORT_OFFSET
HTTP_PORT=$((8500 + O)); TCP_PORT=$((8501 + O)); ADMIN_PORT=$((8590 + O))
O1_PORT=$((9501 + O)); O2_PORT=$((9502 + O)); WS_PORT=$((9503 + O))

OUT=${OUT_DIR:-$ROOT/perf/out/soak-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT/load" "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
SOCK=$OUT/admin.sock
((${#SOCK} < 100)) || SOCK=/tmp/ringproxy-soak.$$.sock   # sun_path holds 108 bytes
EVENTS=$OUT/events.log
PHASE_FILE=$OUT/phase
event() { printf '%s %s\n' "$(date +%s.%N | cut -c1-14)" "$*" >> "$EVENTS"; log "$*"; }

# ------------------------------------------------------------------- processes --
PIDS=()     # process groups this script started (each leader's pid)
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 30); do kill -0 -- "-$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$p" 2>/dev/null || true
  done
  PIDS=()
  rm -f "$OUT/access.fifo" "$PHASE_FILE"
  [[ $SOCK == "$OUT/admin.sock" ]] || rm -f "$SOCK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start LOGFILE CMD...: CMD in a session of its own (its process group is its pid), stdout
# and stderr appended to LOGFILE, stdin from /dev/null, without the lock's fd 9. Sets LAST.
start() {
  local logfile=$1; shift
  setsid "$@" >> "$logfile" 2>&1 < /dev/null 9>&- &
  LAST=$!
  PIDS+=("$LAST")
}
forget() { local p keep=(); for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done; PIDS=("${keep[@]}"); }

# alive PID: running and not a zombie.
alive() {
  local s
  s=$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $s && $s != Z ]]
}

# await PID SECONDS: wait for PID to end (its exit status in AWAIT_RC); after SECONDS,
# TERM then KILL its process group (AWAIT_RC = "killed").
await() {
  local pid=$1 t=$(( $2 * 10 ))
  while alive "$pid" && ((t-- > 0)); do sleep 0.1; done
  if alive "$pid"; then
    kill -TERM -- "-$pid" 2>/dev/null || true; sleep 1; kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    AWAIT_RC=killed
  else
    AWAIT_RC=0; wait "$pid" 2>/dev/null || AWAIT_RC=$?
  fi
  forget "$pid"
}

# Traffic loops, run with `bash -c` in their own session (declare -f passes them).
# shellcheck disable=SC2317  # invoked indirectly
ab_loop() { # URL END N C PAUSE: ab runs separated by form feeds
  local url=$1 end=$2 n=$3 c=$4 pause=$5
  while (($(date +%s) < end)); do
    ab -q -r -s 10 -n "$n" -c "$c" "$url" 2>&1 || echo "ab exit $?"
    printf '\f\n'
    sleep "$pause"
  done
}
# shellcheck disable=SC2317  # invoked indirectly
large_loop() { # END PAUSE HTTP_URL TCP_URL: "kind status size curl_exit expected_size" per request
  local end=$1 pause=$2 kind url out rc
  shift 2
  while (($(date +%s) < end)); do
    for kind in large-http large-tcp; do
      if [[ $kind == large-http ]]; then url=$1; else url=$2; fi
      rc=0; out=$(curl -s -o /dev/null --max-time 30 -w '%{http_code} %{size_download}' "$url") || rc=$?
      echo "$kind ${out:-000 0} $rc 1048576"
      sleep "$pause"
    done
  done
}

fd_kinds() { # PID -> "sockets pipes other" among its descriptors
  local s=0 p=0 o=0 f l
  for f in "/proc/$1/fd"/*; do
    l=$(readlink "$f" 2>/dev/null) || continue
    case $l in socket:*) s=$((s + 1)) ;; pipe:*) p=$((p + 1)) ;; *) o=$((o + 1)) ;; esac
  done
  echo "$s $p $o"
}
stat_field() { # JSON path in python syntax, from /stats.json; empty on failure
  curl -s --max-time 3 "http://127.0.0.1:$ADMIN_PORT/stats.json" |
    python3 -c "import json, sys; d = json.load(sys.stdin); print(d$1)" 2>/dev/null || true
}

# ----------------------------------------------------------------------- the lock --
exec 9> "$BENCH_LOCK"
if ! flock -n 9; then
  log "waiting for $BENCH_LOCK (another benchmark is running)"
  flock 9
fi
log "holding $BENCH_LOCK; output in $OUT"
SCRIPT_START=$(date +%s)   # t = 0 of samples.csv and the plot: after the build and the lock

busy=()
for p in "$HTTP_PORT" "$TCP_PORT" "$ADMIN_PORT" "$O1_PORT" "$O2_PORT" "$WS_PORT"; do
  if ss -Hltn "( sport = :$p )" | grep -q .; then busy+=("$p"); fi
done
((${#busy[@]} == 0)) || die "port(s) ${busy[*]} already in use; stop what listens there or set PORT_OFFSET (e.g. PORT_OFFSET=10000)"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ------------------------------------------------------------------ configuration --
cat > "$OUT/soak.toml" <<EOF
# perf/soak.sh's proxy (generated).
[global]
shards = "auto"
grace = "5s"

[admin]
listen = "127.0.0.1:$ADMIN_PORT"
socket = "$SOCK"
stats_interval = "1s"

[log]
access = "$OUT/access.fifo"    # a FIFO: perf/soak.py accesslog counts the records
format = "json"

[defaults]
timeout_connect = "2s"
timeout_client = "30s"
timeout_server = "30s"
timeout_tunnel = "2m"
timeout_http_request = "5s"
timeout_http_keep_alive = "10s"
retries = 3
retry_on = ["conn-failure", "empty-response"]

[[frontend]]
name = "web"
bind = ["127.0.0.1:$HTTP_PORT"]
mode = "http"
backend = "app"

[[frontend.route]]
path_prefix = "/ws/"
backend = "ws"

[[frontend]]
name = "tcp"
bind = ["127.0.0.1:$TCP_PORT"]
mode = "tcp"
backend = "tcpapp"

[[backend]]
name = "app"
mode = "http"
balance = "roundrobin"
check = true
on_marked_down = "shutdown-sessions"
observe = "layer4"

[backend.health_check]
type = "http"
interval = "1s"
fast_interval = "500ms"
timeout = "500ms"
rise = 2
fall = 2
path = "/"

[[backend.server]]
name = "o1"
address = "127.0.0.1:$O1_PORT"

[[backend.server]]
name = "o2"
address = "127.0.0.1:$O2_PORT"

[[backend]]
name = "ws"
mode = "http"
check = true

[backend.health_check]
type = "http"
interval = "1s"
timeout = "500ms"
path = "/health"

[[backend.server]]
name = "ws1"
address = "127.0.0.1:$WS_PORT"

[[backend]]
name = "tcpapp"
mode = "tcp"
balance = "leastconn"
check = true
on_marked_down = "shutdown-sessions"

[backend.health_check]
type = "tcp"
interval = "1s"
timeout = "500ms"
rise = 2
fall = 2

[[backend.server]]
name = "t1"
address = "127.0.0.1:$O1_PORT"

[[backend.server]]
name = "t2"
address = "127.0.0.1:$O2_PORT"
EOF
"$BIN" check -c "$OUT/soak.toml" > "$OUT/logs/check.txt" 2>&1 || die "invalid configuration (see $OUT/logs/check.txt)"

# ---------------------------------------------------------------------- start-up --
: > "$EVENTS"
echo setup > "$PHASE_FILE"
start "$OUT/logs/o1.log" "$BIN" origin --listen "127.0.0.1:$O1_PORT"; O1_PID=$LAST
# o2 is disowned: its kills are the test, bash need not report them.
start_o2() { start "$OUT/logs/o2.log" "$BIN" origin --listen "127.0.0.1:$O2_PORT"; O2_PID=$LAST; disown "$O2_PID"; }
start_o2
start "$OUT/logs/ws-origin.log" python3 "$PY" ws-origin --listen "127.0.0.1:$WS_PORT"; WS_PID=$LAST
wait_port "$O1_PORT"; wait_port "$O2_PORT"; wait_port "$WS_PORT"

rm -f "$OUT/access.fifo"; mkfifo "$OUT/access.fifo"
start "$OUT/logs/accesslog.log" python3 "$PY" accesslog --fifo "$OUT/access.fifo" --out "$OUT/accesslog.json"
ACCESSLOG_PID=$LAST
start "$OUT/logs/proxy.log" "$BIN" -c "$OUT/soak.toml"; PROXY_PID=$LAST
wait_port "$HTTP_PORT"; wait_port "$TCP_PORT"; wait_port "$ADMIN_PORT"
alive "$PROXY_PID" || die "ringproxy exited (see $OUT/logs/proxy.log)"
event "started: proxy pid $PROXY_PID, o1 $O1_PID, o2 $O2_PID, ws $WS_PID"

# Every path answers before the load starts.
for url in "http://127.0.0.1:$HTTP_PORT/" "http://127.0.0.1:$TCP_PORT/" "http://127.0.0.1:$HTTP_PORT/ws/x"; do
  body=$(curl -s --max-time 5 "$url" || true)
  [[ $body == "Hello, world!" || $body == ok ]] || die "$url answers '$body' (see $OUT/logs)"
done
size=$(curl -s --max-time 10 -o /dev/null -w '%{size_download}' "http://127.0.0.1:$HTTP_PORT/bytes/1048576" || true)
[[ $size == 1048576 ]] || die "/bytes/1048576 gave $size bytes"

# Baseline: the idle proxy, after the pooled connections of those checks expired
# (pool_idle_timeout 4 s) and with its health checks running.
echo baseline > "$PHASE_FILE"
sleep 6
sample() { python3 "$PY" sample --pid "$PROXY_PID" --stats-url "http://127.0.0.1:$ADMIN_PORT/stats.json" \
  --phase-file "$PHASE_FILE" --t0 "$SCRIPT_START" --out "$OUT/samples.csv" "$@"; }
for _ in 1 2 3; do sample --once; sleep 2; done
curl -s --max-time 5 "http://127.0.0.1:$ADMIN_PORT/stats.json" > "$OUT/stats-start.json" || true
base_of() { tail -n 3 "$OUT/samples.csv" | cut -d, -f"$1" | sort -n | sed -n 2p; }   # median of 3
SOCK_BASE=$(base_of 34); OTHER_BASE=$(base_of 36)
log "baseline: $(base_of 4) KiB RSS, $(base_of 5) fds ($SOCK_BASE sockets, $(base_of 35) pipes, $OTHER_BASE other)"

# ---------------------------------------------------------------------- the load --
LOAD_START=$(date +%s)
LOAD_END=$((LOAD_START + SECS))
WARM_END=$((LOAD_START + WARMUP))
echo load > "$PHASE_FILE"
event "load: $SECS s (warm-up $WARMUP s), flapping o2 every $FLAP_PERIOD s (down $FLAP_DOWN s)"
start "$OUT/logs/sampler.log" python3 "$PY" sample --pid "$PROXY_PID" --stats-url "http://127.0.0.1:$ADMIN_PORT/stats.json" \
  --phase-file "$PHASE_FILE" --t0 "$SCRIPT_START" --interval "$SAMPLE_INTERVAL" --out "$OUT/samples.csv"
SAMPLER_PID=$LAST

LUA=$OUT/load/wrk.lua
cat > "$LUA" <<'EOF'
-- perf/soak.sh: a pause between requests (SOAK_DELAY_MS) and one summary line.
local pause = tonumber(os.getenv("SOAK_DELAY_MS") or "2")
function delay() return pause end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("SOAK requests=%d connect=%d read=%d write=%d status=%d timeout=%d bytes=%d p50_us=%d p99_us=%d max_us=%d\n",
    summary.requests, e.connect, e.read, e.write, e.status, e.timeout, summary.bytes,
    latency:percentile(50), latency:percentile(99), latency.max))
end
EOF
LOADERS=()
SOAK_DELAY_MS=$WRK_HTTP_DELAY_MS start "$OUT/load/wrk-http.txt" wrk -t1 -c"$WRK_HTTP_CONNS" -d"${SECS}s" --timeout 10s \
  -s "$LUA" "http://127.0.0.1:$HTTP_PORT/"; LOADERS+=("$LAST")
SOAK_DELAY_MS=$WRK_TCP_DELAY_MS start "$OUT/load/wrk-tcp.txt" wrk -t1 -c"$WRK_TCP_CONNS" -d"${SECS}s" --timeout 10s \
  -s "$LUA" "http://127.0.0.1:$TCP_PORT/"; LOADERS+=("$LAST")
start "$OUT/load/ab.txt" bash -c "$(declare -f ab_loop); ab_loop \"\$@\"" ab_loop \
  "http://127.0.0.1:$HTTP_PORT/" "$LOAD_END" "$AB_N" "$AB_C" "$AB_PAUSE"; LOADERS+=("$LAST")
start "$OUT/load/large.txt" bash -c "$(declare -f large_loop); large_loop \"\$@\"" large_loop "$LOAD_END" "$LARGE_PAUSE" \
  "http://127.0.0.1:$HTTP_PORT/bytes/1048576" "http://127.0.0.1:$TCP_PORT/bytes/1048576"; LOADERS+=("$LAST")
start "$OUT/logs/upgrade.log" python3 "$PY" upgrade --port "$HTTP_PORT" --until "$LOAD_END" \
  --workers "$UPGRADE_WORKERS" --out "$OUT/load/upgrade.json"; LOADERS+=("$LAST")
start "$OUT/logs/slow.log" python3 "$PY" slow --port "$HTTP_PORT" --tcp-port "$TCP_PORT" --until "$LOAD_END" \
  --out "$OUT/load/slow.json"; LOADERS+=("$LAST")

# The main loop: flaps o2, watches the proxy, prints progress once a minute.
o2_up=1; flaps=0; proxy_died=0
next_flap=$((FLAP_PERIOD > 0 ? LOAD_START + FLAP_PERIOD - FLAP_DOWN : LOAD_END + 1))
next_progress=$((LOAD_START + 60))
while (( $(date +%s) < LOAD_END )); do
  now=$(date +%s)
  if ! alive "$PROXY_PID"; then event "ringproxy exited during the load"; proxy_died=1; break; fi
  if ((now >= next_flap)); then
    if ((o2_up)); then
      sig=$(( flaps % 2 ? 15 : 9 ))
      kill -"$sig" "$O2_PID" 2>/dev/null || true
      await "$O2_PID" 5
      flaps=$((flaps + 1)); o2_up=0
      event "flap $flaps: o2 killed (signal $sig)"
      next_flap=$((now + FLAP_DOWN))
    else
      start_o2; wait_port "$O2_PORT"; o2_up=1
      event "o2 started again (pid $O2_PID)"
      next_flap=$((now + FLAP_PERIOD - FLAP_DOWN))
    fi
  fi
  if ((now >= next_progress)); then
    last=$(tail -n 1 "$OUT/samples.csv")
    IFS=, read -r -a f <<< "$last"
    log "$(( (now - LOAD_START) / 60 )) of $((SECS / 60)) min: RSS ${f[3]} KiB, ${f[4]} fds, ${f[7]} sessions, ${f[9]} requests, ${f[14]} 5xx, servers down ${f[32]}"
    next_progress=$((next_progress + 60))
  fi
  sleep 1
done
if ((!o2_up)); then start_o2; wait_port "$O2_PORT"; event "o2 started again (pid $O2_PID), for the end"; fi

# ------------------------------------------------------------------- cool-down --
echo drain > "$PHASE_FILE"
event "load over; waiting for the load generators"
for p in "${LOADERS[@]}"; do await "$p" 90; [[ $AWAIT_RC == killed ]] && event "a load generator (pid $p) had to be stopped"; done
echo cooldown > "$PHASE_FILE"
event "cool-down: until sockets <= $SOCK_BASE + $FD_SLACK, other fds <= $OTHER_BASE + $FD_SLACK and no session (at most $COOLDOWN_MAX s)"
t=0
while alive "$PROXY_PID" && ((t < COOLDOWN_MAX)); do
  read -r socks pipes other <<< "$(fd_kinds "$PROXY_PID")"
  sessions=$(stat_field '["info"]["current_sessions"]')
  if ((socks <= SOCK_BASE + FD_SLACK && other <= OTHER_BASE + FD_SLACK)) && [[ $sessions == 0 ]]; then break; fi
  sleep 1; t=$((t + 1))
done
sleep 2
event "cool-down done after $t s: $socks sockets, $pipes pipes, $other other fds, ${sessions:-?} sessions"
kill -TERM "$SAMPLER_PID" 2>/dev/null || true; await "$SAMPLER_PID" 5
echo end > "$PHASE_FILE"
if alive "$PROXY_PID"; then
  sample --once
  curl -s --max-time 5 "http://127.0.0.1:$ADMIN_PORT/stats.json" > "$OUT/stats-end.json" || true
  curl -s --max-time 5 "http://127.0.0.1:$ADMIN_PORT/metrics" > "$OUT/metrics-end.txt" || true
  "$BIN" status -s "$SOCK" > "$OUT/servers-end.txt" 2>&1 || true
  "$BIN" admin -s "$SOCK" "show info" > "$OUT/info-end.txt" 2>&1 || true
  kill -TERM "$PROXY_PID"
  await "$PROXY_PID" 20
  PROXY_RC=$AWAIT_RC
else
  await "$PROXY_PID" 1
  PROXY_RC="died (exit $AWAIT_RC)"
fi
((proxy_died)) && PROXY_RC="died during the load ($PROXY_RC)"
event "ringproxy stopped: $PROXY_RC"
await "$ACCESSLOG_PID" 15
PANICS=$(grep -c 'panicked' "$OUT/logs/proxy.log" || true)
cleanup   # the origins

# ------------------------------------------------------------------------ report --
rc=0
python3 "$PY" analyze --dir "$OUT" --load-start "$LOAD_START" --warm-end "$WARM_END" --load-end "$LOAD_END" \
  --fd-slack "$FD_SLACK" --pipe-slack "$PIPE_SLACK" --rss-slack-kib "$RSS_SLACK_KIB" --rss-slack-pct "$RSS_SLACK_PCT" \
  --proxy-exit "$PROXY_RC" --panics "${PANICS:-0}" --wrk-http-conns "$WRK_HTTP_CONNS" \
  --wrk-tcp-conns "$WRK_TCP_CONNS" --ab-n "$AB_N" --rates "$OUT/rates.csv" > /dev/null || rc=$?

if command -v gnuplot >/dev/null; then
  cat > "$OUT/plot.gp" <<EOF
set terminal pngcairo size 1200,900 font ",10"
set output "$OUT/rss-fds.png"
set datafile separator ","
set multiplot layout 2,1 title "ringproxy soak, $DURATION ($(date -d "@$LOAD_START" '+%Y-%m-%d %H:%M'), $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))"
set xlabel "minutes since start"
set lmargin 10
set rmargin 10
set grid
set key outside bottom center horizontal
set xrange [0:$(( $(date +%s) - SCRIPT_START ))/60.0]
set arrow 1 from $((LOAD_START - SCRIPT_START))/60.0, graph 0 to $((LOAD_START - SCRIPT_START))/60.0, graph 1 nohead lw 1.5 lc rgb "#606060"
set arrow 2 from $((WARM_END - SCRIPT_START))/60.0, graph 0 to $((WARM_END - SCRIPT_START))/60.0, graph 1 nohead lw 1.5 dt 2 lc rgb "#606060"
set arrow 3 from $((LOAD_END - SCRIPT_START))/60.0, graph 0 to $((LOAD_END - SCRIPT_START))/60.0, graph 1 nohead lw 1.5 lc rgb "#606060"
$(awk -v s="$SCRIPT_START" '/o2 killed/ { t = $1 } /o2 started again/ && t { printf "set object %d rect from %.3f, graph 0 to %.3f, graph 1 behind fc rgb \"#f4dcdc\" fs solid noborder\n", ++n, (t - s) / 60, ($1 - s) / 60; t = 0 }' "$EVENTS")
set ylabel "RSS (MiB)"
set y2label "open fds"
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
set title "RSS and fd count (solid lines: load start and end; dashed: end of warm-up; shaded: o2 down)"
plot "$OUT/samples.csv" every ::1 using (\$2/60):(\$4/1024) with linespoints pt 7 ps 0.4 lw 2 title "RSS (MiB)" axes x1y1, \
     "" every ::1 using (\$2/60):5 with steps lw 2 title "fds (all)" axes x1y2, \
     "" every ::1 using (\$2/60):34 with steps lw 1 dt 2 title "sockets" axes x1y2, \
     "" every ::1 using (\$2/60):35 with steps lw 1 dt 4 title "pipes (splice cache)" axes x1y2
set title "Request and error rates per sample interval (proxy statistics)"
set ylabel "requests/s"
set y2label "errors/s"
plot "$OUT/rates.csv" every ::1 using (\$1/60):2 with lines lw 2 title "requests/s" axes x1y1, \
     "" every ::1 using (\$1/60):3 with impulses lw 2 title "5xx/s" axes x1y2, \
     "" every ::1 using (\$1/60):(\$4 > 0 ? \$4 : NaN) with points pt 7 ps 0.8 title "server-side errors/s (connect, response, timeouts, server aborts, killed, no server)" axes x1y2
unset multiplot
EOF
  gnuplot "$OUT/plot.gp" 2> "$OUT/logs/gnuplot.log" || log "warning: gnuplot failed (see $OUT/logs/gnuplot.log)"
fi

{
  echo "# ringproxy soak: $DURATION, $(date -d "@$LOAD_START" '+%Y-%m-%d %H:%M')"
  echo
  echo "- machine: $(nproc) CPUs, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(uname -sr)"
  echo "- ringproxy $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src 2>/dev/null || echo ' (src modified)'), configuration soak.toml; $(wrk -v 2>&1 | awk 'NR == 1 { print "wrk", $2 }'), ab $(ab -V | awk 'NR == 1 { print $5 }'), $(curl -V | awk 'NR == 1 { print "curl", $2 }'), Python $(python3 -c 'import platform; print(platform.python_version())')"
  echo "- load $SECS s (warm-up $WARMUP s), samples every $SAMPLE_INTERVAL s; o2 killed $flaps times (every $FLAP_PERIOD s, down $FLAP_DOWN s, SIGKILL and SIGTERM in turn); whole run $(( $(date +%s) - SCRIPT_START )) s after the build and the lock"
  echo "- output: $OUT (samples.csv, rss-fds.png, logs/, load/)"
  echo
  cat "$OUT/summary-body.md"
} > "$OUT/summary.md"
cat "$OUT/summary.md"
echo
echo "plot: $OUT/rss-fds.png"
exit "$rc"
