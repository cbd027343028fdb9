#!/bin/sh
# Whole-process time of `ota32 image info` / `image verify` on a 4 MiB image against `openssl dgst -sha256`
# on the same file (the ceiling: both must read and hash every byte). Usage: bench/image_vs_openssl.sh [BUILD_DIR]
set -eu
build=${1:-build}
ota32=$build/src/cli/ota32
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$ota32" image make -o "$dir/app4m.bin" --chip esp32 --project bench --version 1.0 --size 4M
ls -l "$dir/app4m.bin"
hyperfine -N --warmup 5 --runs 50 \
  "openssl dgst -sha256 $dir/app4m.bin" \
  "$ota32 image verify $dir/app4m.bin" \
  "$ota32 image info $dir/app4m.bin"
