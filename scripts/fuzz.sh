#!/usr/bin/env bash
# Runs the libFuzzer targets of build-fuzz/ (OTA32_FUZZ=1 scripts/setup.sh) one after the other, each for
# SECONDS seconds on one core, starting from the seeds in fuzz/corpus/<target>/. New inputs go to
# build-fuzz/corpus/<target>/ and crashes to build-fuzz/artifacts/<target>/ (never into the repo: minimise a
# crash, fix it, then add it to fuzz/corpus/<target>/crash-<what> with its regression test).
#   scripts/fuzz.sh [SECONDS] [TARGET...]        (default: 60 s, every target)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(partition_csv partition_bin otadata app_image elf url http_response range)
fi
status=0
for t in "${targets[@]}"; do
  bin=build-fuzz/fuzz/fuzz_$t
  [[ -x $bin ]] || { echo "fuzz: $bin missing (OTA32_FUZZ=1 scripts/setup.sh)"; exit 2; }
  mkdir -p build-fuzz/corpus/$t build-fuzz/artifacts/$t
  echo "== $t: ${secs} s"
  dict=()
  [[ -f fuzz/$t.dict ]] && dict=(-dict=fuzz/$t.dict)
  "$bin" -max_total_time="$secs" -max_len=16384 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}" \
    -artifact_prefix=build-fuzz/artifacts/$t/ build-fuzz/corpus/$t fuzz/corpus/$t 2>&1 |
    grep -aE '^(#[0-9]+\s+(INITED|DONE)|==[0-9]+==ERROR|SUMMARY|.*FUZZ_CHECK|stat::(number_of_executed_units|peak_rss)|artifact_prefix|Test unit written)' ||
    true
  if compgen -G "build-fuzz/artifacts/$t/*" > /dev/null; then
    echo "fuzz: $t: crashes in build-fuzz/artifacts/$t/"
    status=1
  fi
done
exit $status
