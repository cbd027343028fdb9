#!/usr/bin/env bash
# Server-side user-space instructions per request, ota32-serve against nginx, counted by valgrind's callgrind:
# repeatable to the instruction on any machine load (this VM's speed drifts 20-40 % within minutes, so
# requests/s comparisons need interleaved rounds; this does not). Kernel work (TCP, the copies of read/send)
# is not counted: compare it with bench/serve-bench.sh.
#
#   bench/serve-callgrind.sh [--requests N] [--file-size BYTES] [--servers "ota32 nginx"] [--out DIR]
#
# Each server runs alone under callgrind (ota32-serve --threads 1, nginx with one worker and no master), the
# same zero-config ECDSA P-256 certificate, on 127.0.0.1. Two client loads, each run twice (with 5 and with
# 5 + N requests) so that start-up and shutdown cancel out: per request = (Ir(5 + N) - Ir(5)) / N.
# - newconn: curl, one process per request with `Connection: close` (a full TLS 1.3 X25519 handshake each),
#   AES-128-GCM forced on the client, so both servers run the same cipher;
# - newconn12: the same over TLS 1.2 with ECDHE-ECDSA-AES128-GCM-SHA256, what an ESP32 (mbedTLS) negotiates;
# - keepalive: h2load, one connection, N requests (HTTP/1.1; h2load asks for AES-128-GCM itself).
# Needs: a built build/ tree, valgrind, curl, h2load, nginx, and ../shared/bench/nginx.conf.in.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${OTA32_BUILD_DIR:-$ROOT/build}
CONF_IN="$ROOT/../shared/bench/nginx.conf.in"
N=20 SIZE=1048576 SERVERS="ota32 nginx" OUT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --requests) N=$2; shift 2 ;;
    --file-size) SIZE=$2; shift 2 ;;
    --servers) SERVERS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "serve-callgrind: unknown argument $1" >&2; exit 2 ;;
  esac
done
die() { echo "serve-callgrind: $*" >&2; exit 2; }
[[ "$N" =~ ^[0-9]+$ && "$N" -ge 1 && "$N" -le 1000 ]] || die "--requests must be 1..1000"
[[ "$SIZE" =~ ^[0-9]+$ ]] || die "--file-size must be a number of bytes"
for t in valgrind curl h2load; do command -v "$t" >/dev/null || die "$t not found"; done
SERVE="$BUILD/src/cli/ota32-serve"
[[ -x "$SERVE" ]] || die "no $SERVE: build it first (ninja -C build ota32-serve)"
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/ota32-serve-callgrind.XXXXXX")}
mkdir -p "$OUT/www" "$OUT/nginx/tmp"
head -c "$SIZE" /dev/urandom >"$OUT/www/fw.bin"
PORT=18557
PID=""
cleanup() { if [[ -n $PID ]]; then kill -KILL "$PID" 2>/dev/null || true; fi; }
trap cleanup EXIT

# The zero-config certificate, made by ota32-serve itself; nginx uses the same files.
timeout 20 "$SERVE" serve --data "$OUT/data" --bind 127.0.0.1 --port 0 --access-log off >/dev/null 2>"$OUT/certs.log" &
PID=$!
for _ in $(seq 1 100); do grep -q listening "$OUT/certs.log" && break; sleep 0.1; done
kill -TERM "$PID" 2>/dev/null || true
wait "$PID" 2>/dev/null || true
PID=""
[[ -s "$OUT/data/server_cert.pem" ]] || die "ota32-serve made no certificate; see $OUT/certs.log"
if [[ " $SERVERS " == *" nginx "* ]]; then
  command -v nginx >/dev/null || die "nginx not found"
  [[ -r "$CONF_IN" ]] || die "no $CONF_IN (the shared/ folder beside the checkout)"
  sed -e "s|@WORKERS@|1|" -e "s|@WORKDIR@|$OUT/nginx|g" -e "s|@ERRLEVEL@|error|" -e "s|@PORT@|$PORT|" \
    -e "s|@CERT@|$OUT/data/server_cert.pem|" -e "s|@KEY@|$OUT/data/server_key.pem|" -e "s|@KTLS@||" \
    -e "s|@WWW@|$OUT/www|" -e "s|master_process on|master_process off|" "$CONF_IN" >"$OUT/nginx/nginx.conf"
fi

URL="https://127.0.0.1:$PORT/fw.bin"
# run SERVER MODE COUNT -> prints the instructions callgrind collected over the server's whole life
run() {
  local server=$1 mode=$2 count=$3 log="$OUT/$1-$2-$3.log"
  case "$server" in
    ota32) valgrind --tool=callgrind --callgrind-out-file="$OUT/$1-$2-$3.cg" "$SERVE" serve --dir "$OUT/www" \
             --data "$OUT/data" --bind 127.0.0.1 --port $PORT --threads 1 --access-log off >"$log" 2>&1 & ;;
    nginx) valgrind --tool=callgrind --callgrind-out-file="$OUT/$1-$2-$3.cg" nginx -e "$OUT/nginx/error.log" \
             -c "$OUT/nginx/nginx.conf" >"$log" 2>&1 & ;;
    *) die "unknown server $server" ;;
  esac
  PID=$!
  local up=0
  for _ in $(seq 1 240); do
    if curl -sk --tls13-ciphers TLS_AES_128_GCM_SHA256 -o /dev/null "$URL"; then up=1; break; fi
    sleep 0.25
  done
  [[ $up == 1 ]] || die "$server did not answer under valgrind; see $log"
  if [[ $mode == newconn* ]]; then
    local tls=(--tls13-ciphers TLS_AES_128_GCM_SHA256)
    [[ $mode == newconn12 ]] && tls=(--tls-max 1.2 --ciphers ECDHE-ECDSA-AES128-GCM-SHA256)
    for _ in $(seq 1 "$count"); do
      curl -sSk "${tls[@]}" -H "Connection: close" -o /dev/null "$URL" || die "$server: a request failed"
    done
  else
    h2load -n "$count" -c 1 -m 1 --h1 "$URL" >"$OUT/h2load.log" 2>&1 ||
      die "$server: h2load failed; see $OUT/h2load.log"
    grep -q "$count succeeded" "$OUT/h2load.log" || die "$server: not every h2load request succeeded"
  fi
  if [[ $server == nginx ]]; then kill -QUIT "$PID"; else kill -INT "$PID"; fi
  wait "$PID" 2>/dev/null || true
  PID=""
  sed -nE 's/.*Collected : ([0-9]+).*/\1/p' "$log" | tail -1
}

echo "| mode | server | instructions per request ($SIZE-byte file, $N requests) |"
echo "|---|---|---|"
declare -A per
for mode in newconn newconn12 keepalive; do
  for s in $SERVERS; do
    a=$(run "$s" "$mode" 5)
    b=$(run "$s" "$mode" $((5 + N)))
    [[ -n $a && -n $b ]] || die "$s $mode: callgrind reported no total"
    per[$s,$mode]=$(((b - a) / N))
    printf '| %s | %s | %d |\n' "$mode" "$s" "${per[$s,$mode]}"
  done
done
if [[ -n ${per[ota32,newconn]:-} && -n ${per[nginx,newconn]:-} ]]; then
  for mode in newconn newconn12 keepalive; do
    awk -v m="$mode" -v o="${per[ota32,$mode]}" -v n="${per[nginx,$mode]}" \
      'BEGIN { printf "%s: nginx / ota32 = %.2fx\n", m, n / o }'
  done
fi
echo "serve-callgrind: callgrind files in $OUT"
