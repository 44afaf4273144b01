#!/usr/bin/env bash
# Runs every libFuzzer target of a -Dfuzzing=true build for a bounded time each.
#
#   tests/fuzz/run_fuzzers.sh [SECONDS [BUILD_DIR]]
#
# SECONDS per target: the argument, else $FUZZ_SECONDS, else 60. BUILD_DIR: the
# argument, else $FUZZ_BUILD, else build-fuzz. Targets run one after the other
# (the machine has 2 cores), each from a working corpus in
# BUILD_DIR/fuzz-corpus/<target> seeded from tests/fuzz/corpus/<target> and
# tests/fuzz/regressions/<target> (the source tree is never written), with tests/fuzz/dict/<target>.dict if present.
#
# Prints one parseable line per target and a closing line:
#   fuzz: target=NAME result=pass|fail execs=N seconds=S execs_per_sec=R corpus=N new_units=N peak_rss_mb=N
#   fuzzers: P passed, F failed
# and writes the same fields to BUILD_DIR/fuzz-results.tsv. Any crash, UBSan or
# ASan report, leak, timeout (10 s per input) or out-of-memory (2 GiB) fails its
# target; the input is kept in BUILD_DIR/fuzz-artifacts/<target>/. Once fixed,
# copy it into tests/fuzz/regressions/<target>/ so every build replays it.
# Exit status: 0 if every target passed.
set -uo pipefail
cd "$(dirname "$0")/../.."

seconds="${1:-${FUZZ_SECONDS:-60}}"
build="${2:-${FUZZ_BUILD:-build-fuzz}}"
targets=(packet_parser smtp_session mail_decoder message_fingerprint radius policy control_api)

if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "run_fuzzers: seconds per target must be a positive integer, not '$seconds'" >&2
  exit 2
fi
for t in "${targets[@]}"; do
  if [ ! -x "$build/tests/fuzz/${t}_fuzz" ]; then
    echo "run_fuzzers: $build/tests/fuzz/${t}_fuzz is missing: configure $build with CXX=clang++ -Dfuzzing=true and run 'meson compile -C $build fuzzers'" >&2
    exit 2
  fi
done

# Halt on the first UBSan finding with a stack; libFuzzer turns ASan/UBSan reports into a crash.
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"

results="$build/fuzz-results.tsv"
printf 'target\tresult\texecs\tseconds\texecs_per_sec\tcorpus\tnew_units\tpeak_rss_mb\n' > "$results"
passed=0
failed=0
for t in "${targets[@]}"; do
  work="$build/fuzz-corpus/$t"
  artifacts="$build/fuzz-artifacts/$t"
  log="$build/fuzz-logs/$t.log"
  mkdir -p "$work" "$artifacts" "$(dirname "$log")"
  args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$artifacts/" -max_len=8192)
  [ -f "tests/fuzz/dict/$t.dict" ] && args+=(-dict="tests/fuzz/dict/$t.dict")
  start=$(date +%s.%N)
  seeds=("tests/fuzz/corpus/$t")
  [ -d "tests/fuzz/regressions/$t" ] && seeds+=("tests/fuzz/regressions/$t")   # past findings seed too
  "$build/tests/fuzz/${t}_fuzz" "${args[@]}" "$work" "${seeds[@]}" > "$log" 2>&1
  rc=$?
  end=$(date +%s.%N)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  new_units=$(sed -n 's/^stat::new_units_added: *//p' "$log" | tail -1)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
  corpus=$(find "$work" -type f | wc -l)
  elapsed=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", b - a }')
  if [ "$rc" -eq 0 ] && [ -n "$execs" ]; then
    result=pass
    passed=$((passed + 1))
  else
    result=fail
    failed=$((failed + 1))
  fi
  line="target=$t result=$result execs=${execs:-0} seconds=$elapsed execs_per_sec=${rate:-0} corpus=$corpus new_units=${new_units:-0} peak_rss_mb=${rss:-0}"
  echo "fuzz: $line"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$result" "${execs:-0}" "$elapsed" "${rate:-0}" "$corpus" \
    "${new_units:-0}" "${rss:-0}" >> "$results"
  if [ "$result" = fail ]; then
    echo "fuzz: $t failed (exit $rc); log $log; inputs kept in $artifacts/:" >&2
    ls "$artifacts" >&2
    grep -m 20 -E 'ERROR|runtime error|fuzz check failed|SUMMARY|Test unit written' "$log" >&2
  fi
done
echo "fuzzers: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
