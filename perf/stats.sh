#!/usr/bin/env bash
# perf/stats.sh - what statistics and the access log cost: ringproxy in http mode under
# wrk -c64 (13-byte responses, keep-alive), in three variants run in turn, REPS times
# each, by ../shared/bench/anchors.sh (same pinning as perf/http.sh):
#   stats-off  no [admin]: counters only, no histograms, no snapshots
#   stats-on   [admin] listen: histograms per frontend and server, snapshots every second
#   log        stats-on plus [log] access to a file (haproxy format)
# Prints req/s, p99 and proxy CPU seconds per 1000 requests, medians over the repeats,
# and each variant's cost relative to stats-off. Targets (issue 6): stats <= 3 %,
# stats + access log <= 10 %.
# Usage: perf/stats.sh   (REPS=5 DUR=10 for steadier numbers; QUICK=1 for a smoke run)
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

RUN_DIR=${RUN_DIR:-/tmp/ringproxy-stats.$(date +%Y%m%d-%H%M%S).$$}
mkdir -p "$RUN_DIR"
PORT=$((8300 + PORT_OFFSET))
ADMIN_PORT=$((9900 + PORT_OFFSET))
ROUNDS=${REPS:-3}

config() { # variant
  bench_config http "max_keep_alive_requests = 0"
  case $1 in
    stats-on|log) printf '\n[admin]\nlisten = "127.0.0.1:%s"\n' "$ADMIN_PORT" ;;
  esac
  if [[ $1 == log ]]; then
    printf '\n[log]\naccess = "%s/access.log"\nformat = "haproxy"\n' "$RUN_DIR"
  fi
}

: > "$RUN_DIR/all.csv"
for round in $(seq 1 "$ROUNDS"); do
  for variant in stats-off stats-on log; do
    config "$variant" > "$RUN_DIR/$variant.toml"
    rm -f "$RUN_DIR/access.log"
    sub="$RUN_DIR/$variant.$round"
    mkdir -p "$sub"
    CANDIDATE_CMD="$ROOT/target/release/ringproxy -c $RUN_DIR/$variant.toml" \
    CANDIDATE_NAME="$variant" CANDIDATE_PORT=$PORT \
    SYSTEMS="candidate" WORKLOADS="wrk-c64" REPS=1 \
    RUN_DIR="$sub" KEEP_RUN_DIR=1 bash "$ANCHORS" > "$sub/anchors.out" 2>&1 ||
      { cat "$sub/anchors.out" >&2; exit 1; }
    # The anchors' header once, then every run's rows.
    [[ -s $RUN_DIR/all.csv ]] || head -1 "$sub/results.csv" > "$RUN_DIR/all.csv"
    tail -n +2 "$sub/results.csv" >> "$RUN_DIR/all.csv"
    if [[ $variant == log ]]; then
      echo "round $round: access log lines: $(wc -l < "$RUN_DIR/access.log")" >&2
    fi
  done
done

echo
echo "## Cost of statistics and the access log (wrk -c64, medians of $ROUNDS rounds)"
echo
awk -F, "$AWK_MED"'
  NR == 1 { next }
  $2 == "wrk-c64" && $8 > 0 {
    if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 }
    rps[$1] = rps[$1] " " $4; p99[$1] = p99[$1] " " $6; perk[$1] = perk[$1] " " $11 / $8 * 1000
  }
  END {
    print "| variant | req/s | p99 ms | CPU s per 1000 req | CPU/req vs stats-off | req/s vs stats-off |"
    print "|---|---:|---:|---:|---:|---:|"
    base = med(perk["stats-off"]); brps = med(rps["stats-off"])
    for (i = 1; i <= n; i++) { k = order[i]
      printf "| %s | %.0f | %.2f | %.4f | %+.1f %% | %+.1f %% |\n", k, med(rps[k]), med(p99[k]), med(perk[k]),
        (med(perk[k]) / base - 1) * 100, (med(rps[k]) / brps - 1) * 100 }
  }' "$RUN_DIR/all.csv" | tee "$RUN_DIR/stats.md"
echo "raw: $RUN_DIR/all.csv" >&2
