#!/usr/bin/env bash
# perf/http.sh - http mode (L7): ringproxy vs direct access, HAProxy `mode http` and nginx
# as a reverse proxy, measured in one run with the same pinning (load generator on one
# CPU; origin and the single-shard/single-worker proxies on the other), by
# ../shared/bench/anchors.sh.
#
# Workloads: wrk-c64 and wrk-c256 (13-byte responses over 64/256 keep-alive
# connections), ab-close (one connection per request, HTTP/1.0), ab-ka (HTTP/1.0
# keep-alive, `ab -k`) and wrk-1m (1 MiB responses: the spliced body path).
#
# Prints the anchors table, then an L7 table with proxy CPU seconds per 1000 requests and
# the ratio to HAProxy's. Usage:
#   perf/http.sh                 # full run (3 repeats)
#   QUICK=1 perf/http.sh         # smoke run
#   SPLICE=false perf/http.sh    # copy large bodies through user space instead of splice
# Any anchors.sh knob (DUR, REPS, SYSTEMS, WORKLOADS, PORT_OFFSET, ...) passes through.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

RUN_DIR=${RUN_DIR:-/tmp/ringproxy-http.$(date +%Y%m%d-%H%M%S).$$}
mkdir -p "$RUN_DIR"
PORT=$((8300 + PORT_OFFSET))
bench_config http "max_keep_alive_requests = 0   # as the anchors: no per-connection request limit" \
  > "$RUN_DIR/ringproxy-http.toml"

CANDIDATE_CMD="$ROOT/target/release/ringproxy -c $RUN_DIR/ringproxy-http.toml" \
CANDIDATE_NAME="ringproxy-http" CANDIDATE_PORT=$PORT \
SYSTEMS=${SYSTEMS:-"direct haproxy-http-t1 nginx-w1"} \
WORKLOADS=${WORKLOADS:-"wrk-c64 wrk-c256 ab-close ab-ka wrk-1m"} \
RUN_DIR="$RUN_DIR" KEEP_RUN_DIR=1 bash "$ANCHORS"

echo
echo "## L7 cost (medians over repeats; splice=$SPLICE)"
echo
awk -F, "$AWK_MED"'
  NR == 1 { next }
  {
    key = $1 "|" $2; if (!(key in seen)) { seen[key] = 1; order[++n] = key }
    if (!($2 in wl)) { wl[$2] = 1; wls[++nw] = $2 }
    cpu = ($1 == "direct") ? $12 : $11            # direct: the origin is the only server process
    if ($8 > 0) perk[key] = perk[key] " " cpu / $8 * 1000
    rps[key] = rps[key] " " $4; p99[key] = p99[key] " " $6; mbps[key] = mbps[key] " " $7
  }
  END {
    print "| system | workload | req/s | p99 ms | MB/s | CPU s per 1000 req | x HAProxy CPU/req |"
    print "|---|---|---:|---:|---:|---:|---:|"
    for (i = 1; i <= n; i++) { k = order[i]; split(k, p, "|")
      h = "haproxy-http-t1|" p[2]; ratio = (h in perk && med(perk[h]) > 0) ? sprintf("%.2f", med(perk[k]) / med(perk[h])) : "-"
      printf "| %s | %s | %.0f | %.2f | %.1f | %.4f | %s |\n", p[1], p[2], med(rps[k]), med(p99[k]), med(mbps[k]), med(perk[k]), ratio }
    print ""
    print "CPU = the proxy process group (for direct: the origin). Proxies run one thread/worker on one CPU."
  }' "$RUN_DIR/results.csv" | tee "$RUN_DIR/http.md"
echo "raw: $RUN_DIR/results.csv" >&2
