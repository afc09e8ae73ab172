#!/usr/bin/env bash
# perf/reload.sh - reloads and a stop under wrk, as a user would check them: two built-in
# origins, ringproxy in front (http mode, admin socket), `wrk -c64` for DUR seconds while
# the configuration is reloaded RELOADS times (alternating SIGHUP and `ringproxy reload`,
# each switching the backend between the two origins); then a second wrk run across a
# SIGTERM. Prints wrk's output and exits 1 if wrk saw any socket error or non-2xx
# response during the reloads. A correctness check under load, not a measurement: it does
# not take /tmp/bench.lock and pins nothing.
# Knobs: RELOADS (20) DUR (12) CONNS (64) PORT_OFFSET (0) SKIP_BUILD (0).
set -euo pipefail
ANCHORS_NEEDED=0
CARGO_LOCK=${CARGO_LOCK:-/tmp/cargo.lock}
# shellcheck source=perf/common.sh
. "$(dirname "$0")/common.sh"

RELOADS=${RELOADS:-20}
DUR=${DUR:-12}
CONNS=${CONNS:-64}
PORT=$((8400 + PORT_OFFSET))
O1=$((9101 + PORT_OFFSET))
O2=$((9102 + PORT_OFFSET))
BIN=$ROOT/target/release/ringproxy
WORK=$(mktemp -d /tmp/ringproxy-reload.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

config() { # config ORIGIN_PORT
  cat <<EOF
[global]
grace = "5s"

[admin]
socket = "$WORK/admin.sock"

[[frontend]]
name = "web"
bind = ["127.0.0.1:$PORT"]
mode = "http"
backend = "app"

[[backend]]
name = "app"
mode = "http"

[[backend.server]]
name = "o"
address = "127.0.0.1:$1"
EOF
}

"$BIN" origin --listen "127.0.0.1:$O1" >"$WORK/o1.log" 2>&1 & pids+=($!)
"$BIN" origin --listen "127.0.0.1:$O2" --body-bytes 14 >"$WORK/o2.log" 2>&1 & pids+=($!)
config "$O1" >"$WORK/rp.toml"
"$BIN" -c "$WORK/rp.toml" >"$WORK/rp.log" 2>&1 & proxy=$!; pids+=("$proxy")
wait_port "$PORT"

echo "== wrk -c$CONNS -d${DUR}s with $RELOADS reloads"
wrk -t1 -c"$CONNS" -d"${DUR}s" "http://127.0.0.1:$PORT/" >"$WORK/wrk.out" 2>&1 & wrk=$!
sleep 1
gap=$(awk -v d="$DUR" -v n="$RELOADS" 'BEGIN { printf "%.2f", (d - 2) / n }')
for i in $(seq 1 "$RELOADS"); do
  if ((i % 2)); then config "$O2"; else config "$O1"; fi >"$WORK/rp.toml"
  if ((i % 2)); then kill -HUP "$proxy"; else "$BIN" reload -s "$WORK/admin.sock" >/dev/null; fi
  sleep "$gap"
done
wait "$wrk"
cat "$WORK/wrk.out"
applied=$(grep -c '^ringproxy: reload [0-9]' "$WORK/rp.log" || true)
echo "reloads applied: $applied of $RELOADS"

echo "== wrk -c$CONNS across a SIGTERM (1 s in)"
wrk -t1 -c"$CONNS" -d3s "http://127.0.0.1:$PORT/" >"$WORK/wrk-stop.out" 2>&1 & wrk=$!
sleep 1
kill -TERM "$proxy"
wait "$proxy" && status=0 || status=$?
wait "$wrk" || true
cat "$WORK/wrk-stop.out"
echo "proxy exit status: $status"
tail -3 "$WORK/rp.log"

if grep -qE 'Socket errors|Non-2xx' "$WORK/wrk.out" || ((applied != RELOADS)); then
  echo "FAIL: errors during the reloads" >&2
  exit 1
fi
echo "OK: no error during $RELOADS reloads"
