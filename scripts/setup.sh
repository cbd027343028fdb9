#!/usr/bin/env bash
# Installs every dependency from Debian 12 packages (idempotent, as root or with sudo), then configures and
# builds ota32 twice: build/ (release with debug info) and build-asan/ (Debug, ASan + UBSan).
# Set OTA32_SKIP_APT=1 to skip the package step, OTA32_SKIP_ASAN=1 to build only build/.
# Set OTA32_FUZZ=1 to also build the libFuzzer targets with clang in build-fuzz/ (docs/fuzzing.md).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git clang-format
  libboost1.81-dev libssl-dev openssl libmbedtls-dev libsqlite3-dev sqlite3 libpq-dev postgresql
  libcli11-dev libfmt-dev nlohmann-json3-dev zlib1g-dev libgtest-dev libgmock-dev libbenchmark-dev
  curl hyperfine wrk nghttp2-client nginx-light iproute2 procps
)
# Only with OTA32_FUZZ=1 (CI does not need them): clang, and libFuzzer's runtime, which Debian ships in
# libclang-rt-14-dev, only a Recommends of clang-14 (so absent with --no-install-recommends).
if [[ "${OTA32_FUZZ:-0}" == 1 ]]; then
  PACKAGES+=(clang libclang-rt-14-dev)
fi

if [[ "${OTA32_SKIP_APT:-0}" != 1 ]]; then
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "setup: all Debian packages present"
  fi
fi

# ccache: rewrite paths under the checkout as relative, so a fresh clone in another folder (CI) hits the cache.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$PWD}"
export CCACHE_NOHASHDIR="${CCACHE_NOHASHDIR:-1}"

jobs=$(nproc)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j "$jobs"
if [[ "${OTA32_SKIP_ASAN:-0}" != 1 ]]; then
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DOTA32_SANITIZE=ON -DOTA32_BUILD_BENCH=OFF
  cmake --build build-asan -j "$jobs"
fi
if [[ "${OTA32_FUZZ:-0}" == 1 ]]; then
  cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
    -DCMAKE_CXX_COMPILER=clang++ -DOTA32_FUZZ=ON -DOTA32_BUILD_TESTS=OFF -DOTA32_BUILD_BENCH=OFF
  cmake --build build-fuzz -j "$jobs" --target fuzz_targets
fi
echo "setup: done. Run the tests with: scripts/test.sh"
