#!/usr/bin/env bash
# fuzz/run.sh - builds the cargo-fuzz targets (nightly toolchain, libFuzzer, AddressSanitizer,
# debug assertions) and runs each for a bounded time, then prints a summary: executions,
# corpus size, and findings (crashes, timeouts, out-of-memory) per target.
#
#   fuzz/run.sh                        build, then run every target FUZZ_SECONDS (60) each
#   fuzz/run.sh chunked config         only these targets
#   fuzz/run.sh --build-only           build only
#   fuzz/run.sh --no-build [TARGET..]  run what was built
#
# The corpus is kept: each run starts from fuzz/corpus/<target> (ignored by git) and the
# committed seeds in fuzz/seeds/<target>, and adds what it finds to fuzz/corpus/<target>.
# A finding stops its target (libFuzzer); the input is saved as
# fuzz/artifacts/<target>/crash-* (or timeout-*, oom-*) and the log as
# fuzz/artifacts/<target>.log; replay it with `cargo +nightly fuzz run <target> <file>`,
# then make it a regression test. Not part of CI: it needs nightly and minutes.
set -euo pipefail
cd "$(dirname "$0")"

SECONDS_EACH=${FUZZ_SECONDS:-60}
TOOLCHAIN=${FUZZ_TOOLCHAIN:-nightly}
ALL=(request_head response_head chunked config runtime_api)

build=1 run=1 targets=()
for a in "$@"; do
  case $a in
    --build-only) run=0 ;;
    --no-build) build=0 ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    -*) echo "run.sh: unknown option $a" >&2; exit 2 ;;
    *) targets+=("$a") ;;
  esac
done
((${#targets[@]})) || targets=("${ALL[@]}")

if ((build)); then
  command -v cargo-fuzz >/dev/null || { echo "run.sh: cargo-fuzz missing: cargo install cargo-fuzz" >&2; exit 1; }
  for t in "${targets[@]}"; do
    cargo "+$TOOLCHAIN" fuzz build "$t"
  done
fi
((run)) || exit 0

triple=$(rustc "+$TOOLCHAIN" -vV | sed -n 's/^host: //p')
bin=target/$triple/release

# The config loader resolves host names: without a network they fail at once.
netless=()
if unshare -rn true 2>/dev/null; then netless=(unshare -rn); fi

findings() { find "artifacts/$1" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | wc -l; }

rows=()
failed=0
for t in "${targets[@]}"; do
  [[ -x $bin/$t ]] || { echo "run.sh: $bin/$t not built (run without --no-build)" >&2; exit 1; }
  mkdir -p "corpus/$t" "artifacts/$t"
  before=$(findings "$t")
  wrap=()
  [[ $t == config ]] && wrap=("${netless[@]}")
  echo "== $t: ${SECONDS_EACH}s" >&2
  status=0
  "${wrap[@]}" "$bin/$t" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="artifacts/$t/" "corpus/$t" "seeds/$t" \
    >"artifacts/$t.log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "artifacts/$t.log" | tail -n 1)
  [[ -n $execs ]] || execs=$(grep -o '^#[0-9]*' "artifacts/$t.log" | tail -n 1 | tr -d '#')
  secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "artifacts/$t.log" | tail -n 1)
  corpus=$(find "corpus/$t" -type f | wc -l)
  new=$(($(findings "$t") - before))
  result=ok
  if ((status != 0 || new > 0)); then
    result="FOUND (exit $status; see artifacts/$t.log)"
    failed=1
  fi
  rows+=("$(printf '%-14s %8s %12s %10s %8s  %s' "$t" "${secs:--}" "${execs:-?}" "$corpus" "$new" "$result")")
done

printf '\n%-14s %8s %12s %10s %8s  %s\n' target seconds execs corpus findings result
printf '%s\n' "${rows[@]}"
exit "$failed"
