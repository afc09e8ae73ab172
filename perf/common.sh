# perf/common.sh - what perf/l4.sh and perf/http.sh share (sourced, not run): the anchors
# script's location, the load tools (installed if missing), the release build, and the
# awk median function their tables use.

HERE=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
ROOT=$(dirname "$HERE")
ANCHORS=${ANCHORS:-$ROOT/../shared/bench/anchors.sh}
SPLICE=${SPLICE:-true}
PORT_OFFSET=${PORT_OFFSET:-0}
export PORT_OFFSET
[[ -x $ANCHORS || -f $ANCHORS ]] || { echo "$(basename "$0"): $ANCHORS not found" >&2; exit 1; }

missing=()
for b in wrk ab haproxy nginx curl taskset ss; do command -v "$b" >/dev/null || missing+=("$b"); done
if ((${#missing[@]})); then
  echo "$(basename "$0"): installing wrk apache2-utils haproxy nginx curl" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk apache2-utils haproxy nginx curl >/dev/null
fi

(cd "$ROOT" && cargo build --release --quiet)

# med(s): the median of the space-separated numbers in s (insertion sort; a few repeats).
AWK_MED='
  function med(s,   n, i, j, a, t) { n = split(s, a, " "); for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
                                     return n ? ((n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2) : "" }'
