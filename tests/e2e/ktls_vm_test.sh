#!/usr/bin/env bash
# ota32 serve --ktls end to end, inside a guest whose kernel has the `tls` module (scripts/vm-run.sh: Debian's
# stock kernel under qemu, this machine's / as its root). Runs the serve e2e suite's kTLS half with kTLS
# required (OTA32_TEST_REQUIRE_KTLS: a test fails if the kernel did not take the connections), then the
# device and API end-to-end tests with every server started with --ktls (OTA32_TEST_SERVE_KTLS), then 100
# ESP32-like slow downloads (TLS 1.2, 64 KB/s, small window: the kernel's sendfile meets a full socket all
# the time) against one --ktls server: all must complete, and through the kernel.
#
#   tests/e2e/ktls_vm_test.sh BUILD_DIR       (CTest: ctest --test-dir build -L vm)
#
# Skips (exit 77) when the VM is not prepared: a test does not download a kernel. Prepare it once with
# `scripts/vm-run.sh --setup` (apt: qemu-system-x86, busybox-static, kmod, and Debian's kernel package).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=$(cd "${1:?usage: ktls_vm_test.sh BUILD_DIR}" && pwd)
cache=${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/ota32-vm
if ! command -v qemu-system-x86_64 >/dev/null; then
  echo "[  SKIPPED ] no qemu-system-x86_64: run scripts/vm-run.sh --setup"
  exit 77
fi
if ! compgen -G "$cache/kernel/*/.ok" >/dev/null; then
  echo "[  SKIPPED ] no prepared guest kernel in $cache: run scripts/vm-run.sh --setup"
  exit 77
fi
e2e=$build/tests/e2e
for t in "$e2e"/{serve_e2e_test,seed_flow_test,api_e2e_test,update_server_e2e_test} \
  "$build/bench/server/serve_slow_clients" "$build/src/cli/ota32-serve"; do
  [[ -x $t ]] || { echo "ktls_vm_test: $t not built" >&2; exit 1; }
done
# One guest for all: the boot costs ~10 s, the tests a few minutes under software emulation.
# shellcheck disable=SC2016  # $1 expands in the guest's shell
exec "$root/scripts/vm-run.sh" --timeout 1700 --env OTA32_TEST_REQUIRE_KTLS=1 -- sh -c '
  set -e
  "$1/serve_e2e_test" --gtest_filter="*/Ktls" --gtest_brief=1
  for t in seed_flow_test api_e2e_test update_server_e2e_test; do
    OTA32_TEST_SERVE_KTLS=1 "$1/$t" --gtest_brief=1
  done
  echo "== 100 slow TLS 1.2 downloads from a --ktls server"
  d=$(mktemp -d) && mkdir "$d/www" && head -c 1048576 /dev/urandom >"$d/www/fw.bin"
  "$2/src/cli/ota32-serve" serve --dir "$d/www" --data "$d/data" --bind 127.0.0.1 --port 18443 \
    --access-log off --ktls >/dev/null 2>"$d/err" &
  srv=$!
  for _ in $(seq 1 100); do grep -q listening "$d/err" && break; sleep 0.3; done
  "$2/bench/server/serve_slow_clients" --host 127.0.0.1 --port 18443 --path /fw.bin --clients 100 \
    --rate 65536 --ramp 2 --duration 120 --threads 2 >"$d/slow.log" || { tail -3 "$d/slow.log"; exit 1; }
  tail -1 "$d/slow.log"
  k=$(curl -sS --cacert "$d/data/ca_cert.pem" https://127.0.0.1:18443/metrics |
      sed -n "s/^ota32_tls_kernel_connections_total //p")
  kill "$srv"
  echo "kernel TLS connections: $k"
  [ "${k:-0}" -ge 100 ]' sh "$e2e" "$build"
