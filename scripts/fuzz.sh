#!/usr/bin/env bash
# Runs the libFuzzer targets of build-fuzz/ (OTA32_FUZZ=1 scripts/setup.sh) one after the other on one core,
# each for SECONDS seconds or for --execs N executions, starting from the seeds in fuzz/corpus/<target>/. New
# inputs go to build-fuzz/corpus/<target>/ and crashes to build-fuzz/artifacts/<target>/ (never into the repo:
# minimise a crash, fix it, then add it to fuzz/corpus/<target>/crash-<what> with its regression test). The
# last line per target is "fuzz: <target>: <executions> executions, <crashes> crashes".
#   scripts/fuzz.sh [SECONDS] [TARGET...]          (default: 60 s, every target)
#   scripts/fuzz.sh --execs N [TARGET...]          (N executions per target, e.g. 10000000; no time limit
#                                                   unless FUZZ_MAX_SECONDS caps each target's run)
set -euo pipefail
cd "$(dirname "$0")/.."
limit=(-max_total_time=60)
what="60 s"
if [[ ${1:-} == --execs ]]; then
  [[ ${2:-} =~ ^[0-9]+$ ]] || { echo "fuzz: --execs needs a number of executions"; exit 2; }
  limit=(-runs="$2")
  what="$2 executions"
  if [[ -n ${FUZZ_MAX_SECONDS:-} ]]; then
    limit+=(-max_total_time="$FUZZ_MAX_SECONDS")
    what+=" or $FUZZ_MAX_SECONDS s"
  fi
  shift 2
elif [[ ${1:-} =~ ^[0-9]+$ ]]; then
  limit=(-max_total_time="$1")
  what="$1 s"
  shift
fi
targets=("$@")
if ((${#targets[@]} == 0)); then
  targets=(partition_csv partition_bin otadata app_image elf url http_response range der_san http_request
    signature_block)
fi
status=0
for t in "${targets[@]}"; do
  bin=build-fuzz/fuzz/fuzz_$t
  [[ -x $bin ]] || { echo "fuzz: $bin missing (OTA32_FUZZ=1 scripts/setup.sh)"; exit 2; }
  mkdir -p build-fuzz/corpus/$t build-fuzz/artifacts/$t
  echo "== $t: $what"
  dict=()
  [[ -f fuzz/$t.dict ]] && dict=(-dict=fuzz/$t.dict)
  before=$(find build-fuzz/artifacts/$t -type f | wc -l)
  "$bin" "${limit[@]}" -max_len=16384 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}" \
    -artifact_prefix=build-fuzz/artifacts/$t/ build-fuzz/corpus/$t fuzz/corpus/$t 2>&1 |
    tee build-fuzz/fuzz-$t.log |
    grep -aE '^(#[0-9]+\s+(INITED|DONE)|==[0-9]+==ERROR|SUMMARY|.*FUZZ_CHECK|stat::(number_of_executed_units|peak_rss)|artifact_prefix|Test unit written)' ||
    true
  execs=$(grep -aoE '^stat::number_of_executed_units: [0-9]+' build-fuzz/fuzz-$t.log | grep -oE '[0-9]+$' || echo 0)
  crashes=$(($(find build-fuzz/artifacts/$t -type f | wc -l) - before))
  echo "fuzz: $t: $execs executions, $crashes crashes"
  if ((crashes > 0)); then
    echo "fuzz: $t: crashes in build-fuzz/artifacts/$t/"
    status=1
  fi
done
exit $status
