#!/usr/bin/env bash
# The whole test run (README, .ci/run). Four steps; all run even if one fails;
# the exit status is non-zero if any failed.
#   1. build/ (the default gcc build, scripts/build.sh): every suite.
#   2. build-asan/ (gcc, -Dsanitize=true: ASan + UBSan, halting on the first
#      finding, LeakSanitizer on): the unit and replay suites.
#   3. build-fuzz/ (clang, -Dfuzzing=true): every libFuzzer target for
#      $FUZZ_SECONDS seconds (default 60) by tests/fuzz/run_fuzzers.sh.
#   4. build-release/ (gcc, --buildtype=release, -O3): everything compiles with
#      warnings as errors (every build type builds; the default is debugoptimized).
# Set TEST_STEPS to a subset (e.g. "1 2") to run only some of them.
set -uo pipefail
cd "$(dirname "$0")/.."

steps="${TEST_STEPS:-1 2 3 4}"
fuzz_seconds="${FUZZ_SECONDS:-60}"
status=0
failed=()

step() {   # step NAME COMMAND...
  local name=$1
  shift
  echo "== test.sh: $name"
  if "$@"; then
    echo "== test.sh: $name: ok"
  else
    echo "== test.sh: $name: FAILED"
    status=1
    failed+=("$name")
  fi
}

build_and_test_default() {
  scripts/build.sh && meson test -C build --print-errorlogs
}

build_and_test_asan() {
  if [ ! -f build-asan/build.ninja ]; then
    meson setup build-asan -Dsanitize=true -Dwerror=true || return 1
  fi
  # LeakSanitizer stays on: the EAL under ASan (--no-huge, rte_eal_cleanup at
  # exit) reports no leaks of its own, checked with unit_eal and sekishod's
  # replay runs; a leak fails the test. UBSan halts on the first finding (also
  # built with -fno-sanitize-recover=all).
  ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1}" \
  UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}" \
    bash -c 'meson compile -C build-asan && meson test -C build-asan --suite unit --suite replay --print-errorlogs --timeout-multiplier 3'
}

build_release() {
  if [ ! -f build-release/build.ninja ]; then
    meson setup build-release --buildtype=release -Dwerror=true || return 1
  fi
  meson compile -C build-release && touch build-release/release-build-passed
}

build_and_fuzz() {
  if [ ! -f build-fuzz/build.ninja ]; then
    CXX=clang++ meson setup build-fuzz -Dfuzzing=true -Dwerror=true || return 1
  fi
  meson compile -C build-fuzz fuzzers && tests/fuzz/run_fuzzers.sh "$fuzz_seconds" build-fuzz
}

# No stale results: .ci/run sums these files for its closing line.
rm -f build/meson-logs/testlog.json build-asan/meson-logs/testlog.json build-fuzz/fuzz-results.tsv \
  build-release/release-build-passed
for s in $steps; do
  case "$s" in
    1) step "build/: all suites" build_and_test_default ;;
    2) step "build-asan/: unit and replay suites under ASan+UBSan" build_and_test_asan ;;
    3) step "build-fuzz/: fuzzers, ${fuzz_seconds} s each" build_and_fuzz ;;
    4) step "build-release/: a release build with warnings as errors" build_release ;;
    *) echo "test.sh: unknown step '$s' (1, 2, 3 or 4)" >&2; status=2 ;;
  esac
done
if [ "$status" -eq 0 ]; then
  echo "== test.sh: all steps passed"
else
  echo "== test.sh: failed: ${failed[*]:-bad arguments}"
fi
exit "$status"
