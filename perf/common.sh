# shellcheck shell=bash
# perf/common.sh - what the perf scripts share (sourced, not run): the anchors script's
# location, the load tools (installed if missing), the release build, the candidate's
# configuration, and the awk median function their tables use.
# Set before sourcing: ANCHORS_NEEDED=0 for a script that does not drive anchors.sh;
# CARGO_LOCK=FILE to take that flock(1) lock around the build (a machine shared by several
# builds); SKIP_BUILD=1 to use target/release/ringproxy as it is.

HERE=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
ROOT=$(dirname "$HERE")
ANCHORS=${ANCHORS:-$ROOT/../shared/bench/anchors.sh}
SPLICE=${SPLICE:-true}
PORT_OFFSET=${PORT_OFFSET:-0}
export PORT_OFFSET
if [[ ${ANCHORS_NEEDED:-1} == 1 && ! -f $ANCHORS ]]; then
  echo "$(basename "$0"): $ANCHORS not found (set ANCHORS=path/to/anchors.sh)" >&2; exit 1
fi

missing=()
for b in wrk ab haproxy nginx curl taskset ss; do command -v "$b" >/dev/null || missing+=("$b"); done
if ((${#missing[@]})); then
  echo "$(basename "$0"): installing wrk apache2-utils haproxy nginx curl" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk apache2-utils haproxy nginx curl >/dev/null
fi

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  build=(cargo build --release --quiet)
  [[ -z ${CARGO_LOCK:-} ]] || build=(flock "$CARGO_LOCK" "${build[@]}")
  (cd "$ROOT" && "${build[@]}")
fi

# med(s): the median of the space-separated numbers in s (insertion sort; a few repeats).
# shellcheck disable=SC2034  # used by the scripts that source this file
AWK_MED='
  function med(s,   n, i, j, a, t) { n = split(s, a, " "); for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
                                     return n ? ((n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2) : "" }'

# bench_config MODE [FRONTEND_LINE...]: the candidate's configuration on stdout: frontend
# "bench" on 127.0.0.1:$PORT in MODE (tcp or http) with the extra frontend lines, backend
# "origins" over the anchors' two origins. Shards "auto": the affinity mask anchors.sh
# gives the candidate, one CPU. Append sections ([admin], [log]) after it.
bench_config() {
  local mode=$1; shift
  printf '[global]\nshards = "auto"\ngrace = "1s"\n\n[defaults]\nsplice = %s\n\n' "$SPLICE"
  printf '[[frontend]]\nname = "bench"\nbind = ["127.0.0.1:%s"]\nmode = "%s"\nbackend = "origins"\n' "$PORT" "$mode"
  local line; for line in "$@"; do printf '%s\n' "$line"; done
  printf '\n[[backend]]\nname = "origins"\nmode = "%s"\n' "$mode"
  local i; for i in 1 2; do
    printf '\n[[backend.server]]\nname = "o%s"\naddress = "127.0.0.1:%s"\n' "$i" $((9000 + i + PORT_OFFSET))
  done
}

# cpu_ticks PID...: CPU ticks (1/CLK_TCK s, 1/100 on Linux) of the processes (all their
# threads) and their live children: utime + stime from /proc/PID/stat.
cpu_ticks() {
  local t=0 p
  for p in "$@" $(for q in "$@"; do pgrep -P "$q" || true; done); do
    # Fields counted after the ") " that ends the command name (which may hold spaces).
    [[ -r /proc/$p/stat ]] && t=$((t + $(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}

# wait_port PORT: returns once something listens on 127.0.0.1:PORT (5 s at most).
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
