#!/usr/bin/env bash
# perf/l4.sh - tcp mode (L4) forwarding: ringproxy vs direct access vs HAProxy `mode tcp`,
# measured in one run with the same pinning (load generator on one CPU; origin and the
# single-shard proxies on the other), by ../shared/bench/anchors.sh.
#
# Workloads: wrk-1m (1 MiB responses over 8 keep-alive connections: bulk throughput),
# ab-close (13-byte responses, one TCP connection per request: per-connection cost) and
# wrk-c64 (13-byte responses over 64 keep-alive connections: small relays).
#
# Prints the anchors table, then an L4 table with proxy CPU seconds per GiB moved and per
# 1000 connections. Usage:
#   perf/l4.sh                 # full run (3 repeats)
#   QUICK=1 perf/l4.sh         # smoke run
#   SPLICE=false perf/l4.sh    # the copy engine instead of splice
# Any anchors.sh knob (DUR, REPS, PORT_OFFSET, ...) passes through.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

RUN_DIR=${RUN_DIR:-/tmp/ringproxy-l4.$(date +%Y%m%d-%H%M%S).$$}
mkdir -p "$RUN_DIR"
PORT=$((8300 + PORT_OFFSET))
bench_config tcp > "$RUN_DIR/ringproxy-tcp.toml"

CANDIDATE_CMD="$ROOT/target/release/ringproxy -c $RUN_DIR/ringproxy-tcp.toml" \
CANDIDATE_NAME="ringproxy-tcp" CANDIDATE_PORT=$PORT \
SYSTEMS=${SYSTEMS:-"direct haproxy-tcp-t1"} WORKLOADS=${WORKLOADS:-"wrk-1m ab-close wrk-c64"} \
RUN_DIR="$RUN_DIR" KEEP_RUN_DIR=1 bash "$ANCHORS"

echo
echo "## L4 cost (medians over repeats; splice=$SPLICE)"
echo
awk -F, "$AWK_MED"'
  NR == 1 { next }
  {
    key = $1 "|" $2; if (!(key in seen)) { seen[key] = 1; order[++n] = key }
    cpu = ($1 == "direct") ? $12 : $11            # direct: the origin is the only server process
    gib = $7 * $10 / 1024                          # MiB/s x wall s -> GiB
    if (gib > 0) perg[key] = perg[key] " " cpu / gib
    if ($8 > 0) perk[key] = perk[key] " " cpu / $8 * 1000
    mbps[key] = mbps[key] " " $7; rps[key] = rps[key] " " $4
  }
  END {
    print "| system | workload | req/s | MB/s | CPU s per GiB | CPU s per 1000 conns or reqs |"
    print "|---|---|---:|---:|---:|---:|"
    for (i = 1; i <= n; i++) { k = order[i]; split(k, p, "|")
      printf "| %s | %s | %.0f | %.1f | %.3f | %.4f |\n", p[1], p[2], med(rps[k]), med(mbps[k]), med(perg[k]), med(perk[k]) }
    print ""
    print "CPU = the proxy process group (for direct: the origin). ab-close opens one connection per request,"
    print "so its last column is CPU seconds per 1000 connections."
  }' "$RUN_DIR/results.csv" | tee "$RUN_DIR/l4.md"
echo "raw: $RUN_DIR/results.csv" >&2
