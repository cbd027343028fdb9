#!/usr/bin/env bash
# ota32 serve benchmark: the shared harness (../shared/bench/serve-bench.sh beside the repository) against
# ota32-serve, nginx (same certificate, session cache and tickets off) and `openssl s_server -WWW`, on a
# 1 MiB file over 127.0.0.1; then N slow clients (ESP32-like, ~64 KB/s each) against ota32-serve.
#
#   bench/serve-bench.sh [--servers "ota32 nginx s_server"] [--concurrency "1 10 100 1000"]
#                        [--modes "newconn keepalive"] [--duration 10] [--slow 10000] [--out DIR]
# Needs: a built build/ tree (ota32-serve, serve_slow_clients), h2load, wrk, nginx, openssl, curl.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HARNESS="$ROOT/../shared/bench/serve-bench.sh"
BUILD=${OTA32_BUILD_DIR:-$ROOT/build}
SERVERS="ota32 nginx s_server" CONC="1 10 100 1000" MODES="newconn keepalive" DURATION=10 SLOW=10000 OUT=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --servers) SERVERS=$2; shift 2 ;;
    --concurrency) CONC=$2; shift 2 ;;
    --modes) MODES=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --slow) SLOW=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "serve-bench: unknown argument $1" >&2; exit 2 ;;
  esac
done
die() { echo "serve-bench: $*" >&2; exit 2; }
[[ -x "$HARNESS" || -r "$HARNESS" ]] || die "shared harness not found at $HARNESS (the shared/ folder beside the checkout)"
[[ -x "$BUILD/src/cli/ota32-serve" ]] || die "no $BUILD/src/cli/ota32-serve: build it first (ninja -C build ota32-serve)"
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/ota32-serve-bench.XXXXXX")}
mkdir -p "$OUT/www" "$OUT/logs"
head -c 1048576 /dev/urandom >"$OUT/www/fw.bin"

# Zero-config certificate made by ota32-serve itself; nginx and s_server use the same files.
DATA="$OUT/data"
timeout 20 "$BUILD/src/cli/ota32-serve" serve --data "$DATA" --bind 127.0.0.1 --port 0 --access-log off \
  2>"$OUT/logs/certs.log" &
CERT_PID=$!
for _ in $(seq 1 100); do [[ -s "$DATA/server_cert.pem" ]] && grep -q listening "$OUT/logs/certs.log" && break; sleep 0.1; done
kill -TERM "$CERT_PID" 2>/dev/null || true
wait "$CERT_PID" 2>/dev/null || true
CERT="$DATA/server_cert.pem" KEY="$DATA/server_key.pem" CA="$DATA/ca_cert.pem"
[[ -s "$CERT" ]] || die "ota32-serve did not create a certificate; see $OUT/logs/certs.log"

PORT=18443
CSV="$OUT/results.csv"
for s in $SERVERS; do
  case "$s" in
    ota32)
      START="exec '$BUILD/src/cli/ota32-serve' serve --dir '$OUT/www' --data '$DATA' --bind 127.0.0.1 --port $PORT --access-log off" ;;
    nginx)
      mkdir -p "$OUT/nginx/tmp"
      sed -e "s|@WORKERS@|$(nproc)|" -e "s|@WORKDIR@|$OUT/nginx|g" -e "s|@ERRLEVEL@|error|" -e "s|@PORT@|$PORT|" \
        -e "s|@CERT@|$CERT|" -e "s|@KEY@|$KEY|" -e "s|@KTLS@||" -e "s|@WWW@|$OUT/www|" \
        "$(dirname "$HARNESS")/nginx.conf.in" >"$OUT/nginx/nginx.conf"
      START="exec nginx -e '$OUT/nginx/nginx-error.log' -c '$OUT/nginx/nginx.conf'" ;;
    s_server)
      START="cd '$OUT/www' && exec openssl s_server -quiet -WWW -accept 127.0.0.1:$PORT -cert '$CERT' -key '$KEY' -no_ticket" ;;
    *) die "unknown server $s" ;;
  esac
  bash "$HARNESS" --name "$s" --url "https://127.0.0.1:$PORT/fw.bin" --cacert "$CA" --start "$START" \
    --concurrency "$CONC" --modes "$MODES" --duration "$DURATION" --out "$CSV" --logdir "$OUT/logs" --cooldown 2
done

if [[ "$SLOW" -gt 0 ]]; then
  CLIENT="$BUILD/bench/server/serve_slow_clients"
  [[ -x "$CLIENT" ]] || die "no $CLIENT: build it (ninja -C build serve_slow_clients)"
  ulimit -n "$(ulimit -Hn)"
  "$BUILD/src/cli/ota32-serve" serve --dir "$OUT/www" --data "$DATA" --bind 127.0.0.1 --port $PORT \
    --access-log off --max-connections $((SLOW + 1000)) 2>"$OUT/logs/slow-server.log" &
  SRV=$!
  trap 'kill -TERM $SRV 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do grep -q listening "$OUT/logs/slow-server.log" && break; sleep 0.1; done
  base_kb=$(awk '/^VmRSS/ { print $2 }' /proc/$SRV/status)
  ( peak=0; while kill -0 $SRV 2>/dev/null; do
      r=$(awk '/^VmRSS/ { print $2 }' /proc/$SRV/status 2>/dev/null || echo 0)
      a=$(curl -s --max-time 2 --cacert "$CA" "https://127.0.0.1:$PORT/metrics" | awk '/^ota32_connections_active/ { print $2 }')
      m=$(awk '/^TCP:/ { print $NF }' /proc/net/sockstat)
      echo "$(date +%s) tcp_mem_pages=$m rss_kb=$r active=${a:-?}"; sleep 1; done ) >"$OUT/logs/slow-rss.log" 2>&1 &
  SAMPLER=$!
  set +e
  "$CLIENT" --host 127.0.0.1 --port $PORT --path /fw.bin --clients "$SLOW" --rate 65536 --ramp 10 --duration 60 --threads "$(nproc)" \
    | tee "$OUT/logs/slow-clients.log" | tail -n 3
  rc=${PIPESTATUS[0]}
  set -e
  kill $SAMPLER 2>/dev/null || true
  peak_kb=$(sed -E 's/.*rss_kb=([0-9]+).*/\1/' "$OUT/logs/slow-rss.log" | sort -n | tail -1)
  tcp_pages=$(sed -E 's/.*tcp_mem_pages=([0-9]+).*/\1/' "$OUT/logs/slow-rss.log" | sort -n | tail -1)
  peak_active=$(sed -nE 's/.*active=([0-9]+)$/\1/p' "$OUT/logs/slow-rss.log" | sort -n | tail -1)
  echo "slow clients: $SLOW at 64 KB/s, client exit $rc; server RSS base ${base_kb} KiB, peak ${peak_kb} KiB," \
       "peak active connections ${peak_active}; per connection $(( (peak_kb - base_kb) / (peak_active > 0 ? peak_active : 1) )) KiB;" \
       "kernel TCP memory peak $((tcp_pages * 4)) KiB for server and client sockets together" \
    | tee "$OUT/slow-summary.txt"
fi
echo "serve-bench: results in $CSV (raw logs in $OUT/logs)"
