#!/usr/bin/env bash
# Runs the test suites: everything in build/ (slow suites in their short smoke form), then the unit tests
# again under ASan + UBSan in build-asan/. Extra arguments go to both ctest runs (e.g. -R Partition).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
status=0
echo "== build/: all suites"
ctest --test-dir build --output-on-failure -j "$jobs" -LE slow "$@" || status=1
if [[ -d build-asan ]]; then
  echo "== build-asan/: unit tests under ASan + UBSan"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure -j "$jobs" -L unit "$@" || status=1
fi
exit $status
