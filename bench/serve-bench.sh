#!/usr/bin/env bash
# ota32 serve benchmark: the shared harness (../shared/bench/serve-bench.sh beside the repository) against
# ota32-serve, nginx (same certificate, session cache and tickets off) and `openssl s_server -WWW`, on a
# 1 MiB file over 127.0.0.1; then N slow clients (ESP32-like, ~64 KB/s each) against ota32-serve.
#
#   bench/serve-bench.sh [--servers "ota32 nginx s_server"] [--concurrency "1 10 100 1000"]
#                        [--modes "newconn keepalive"] [--duration 10] [--rounds 1] [--slow 10000] [--out DIR]
#                        [--ktls] [--tls12]
#
# Each (mode, clients) cell runs every server back to back, in an order that rotates from round to round,
# so that a machine whose speed drifts (a shared VM) affects the servers of one cell alike; with --rounds N
# the cell runs N times and summary.md gives each server's median requests/s and the median of the
# per-round ota32/nginx ratios. --ktls: kernel TLS for both ota32 (serve --ktls: TLS 1.2 connections, like the
# slow clients') and nginx (`ssl_conf_command Options KTLS`: 1.2 and 1.3), on a kernel with the `tls` module.
# --tls12: both servers offer TLS 1.2 only (ota32 --tls-max 1.2, nginx ssl_protocols TLSv1.2), as an ESP32
# fleet negotiates; with --ktls every ota32 connection then goes through the kernel.
# Needs: a built build/ tree (ota32-serve, serve_slow_clients), h2load, wrk, nginx, openssl, curl.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HARNESS="$ROOT/../shared/bench/serve-bench.sh"
BUILD=${OTA32_BUILD_DIR:-$ROOT/build}
SERVERS="ota32 nginx s_server" CONC="1 10 100 1000" MODES="newconn keepalive" DURATION=10 ROUNDS=1 SLOW=10000 OUT="" KTLS=0 TLS12=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --servers) SERVERS=$2; shift 2 ;;
    --concurrency) CONC=$2; shift 2 ;;
    --modes) MODES=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --slow) SLOW=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --ktls) KTLS=1; shift ;;
    --tls12) TLS12=1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "serve-bench: unknown argument $1" >&2; exit 2 ;;
  esac
done
die() { echo "serve-bench: $*" >&2; exit 2; }
[[ "$ROUNDS" =~ ^[0-9]+$ && "$ROUNDS" -ge 1 && "$ROUNDS" -le 20 ]] || die "--rounds must be 1..20"
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
OTA32_TLS_ARGS=() NGINX_KTLS=""
if [[ $KTLS == 1 ]]; then OTA32_TLS_ARGS+=(--ktls) NGINX_KTLS="ssl_conf_command Options KTLS;"; fi
NGINX_PROTOCOLS="TLSv1.2 TLSv1.3"
S_SERVER_TLS=""
if [[ $TLS12 == 1 ]]; then OTA32_TLS_ARGS+=(--tls-max 1.2) NGINX_PROTOCOLS="TLSv1.2" S_SERVER_TLS="-no_tls1_3"; fi
CSV="$OUT/results.csv"
start_cmd() { # server name -> the shell command that starts it in the foreground
  case "$1" in
    ota32)
      echo "exec '$BUILD/src/cli/ota32-serve' serve --dir '$OUT/www' --data '$DATA' --bind 127.0.0.1 --port $PORT --access-log off ${OTA32_TLS_ARGS[*]}" ;;
    nginx)
      mkdir -p "$OUT/nginx/tmp"
      sed -e "s|@WORKERS@|$(nproc)|" -e "s|@WORKDIR@|$OUT/nginx|g" -e "s|@ERRLEVEL@|error|" -e "s|@PORT@|$PORT|" \
        -e "s|@CERT@|$CERT|" -e "s|@KEY@|$KEY|" -e "s|@KTLS@|$NGINX_KTLS|" -e "s|@WWW@|$OUT/www|" \
        -e "s|ssl_protocols TLSv1.2 TLSv1.3;|ssl_protocols $NGINX_PROTOCOLS;|" \
        "$(dirname "$HARNESS")/nginx.conf.in" >"$OUT/nginx/nginx.conf"
      echo "exec nginx -e '$OUT/nginx/nginx-error.log' -c '$OUT/nginx/nginx.conf'" ;;
    s_server)
      echo "cd '$OUT/www' && exec openssl s_server -quiet -WWW -accept 127.0.0.1:$PORT -cert '$CERT' -key '$KEY' -no_ticket $S_SERVER_TLS" ;;
    *) return 1 ;;
  esac
}
read -r -a server_list <<<"$SERVERS"
for s in "${server_list[@]}"; do start_cmd "$s" >/dev/null || die "unknown server $s"; done
for round in $(seq 1 "$ROUNDS"); do
  for mode in $MODES; do
    for c in $CONC; do
      n=${#server_list[@]}
      for i in $(seq 0 $((n - 1))); do  # rotate the order by one server per round
        s=${server_list[$(((i + round - 1) % n))]}
        bash "$HARNESS" --name "$s" --url "https://127.0.0.1:$PORT/fw.bin" --cacert "$CA" --start "$(start_cmd "$s")" \
          --concurrency "$c" --modes "$mode" --duration "$DURATION" --out "$CSV" --logdir "$OUT/logs/round$round" \
          --cooldown 1 --note "round $round"
      done
    done
  done
done

# summary.md: per cell, each server's median req/s (and MB/s, server CPU ms per request), and the median
# of the per-round ota32/nginx ratios.
[[ -s "$CSV" ]] && awk -F, -v servers="$SERVERS" '
  NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
  {
    srv = $col["server"]; mode = $col["mode"]; c = $col["concurrency"]
    round = $col["notes"]; sub(/.*round /, "", round); sub(/[^0-9].*/, "", round)
    key = mode SUBSEP c
    if (!(key in seen)) { seen[key] = 1; order[++ncell] = key }
    rps[srv, key, round] = $col["req_per_s"] + 0
    mbs[srv, key, ++nm[srv, key]] = $col["MB_per_s"] + 0
    req[srv, key, ++nr[srv, key]] = $col["req_per_s"] + 0
    cpu[srv, key, ++nc[srv, key]] = ($col["req_per_s"] > 0) ? $col["server_cpu_pct"] / 100 / $col["req_per_s"] * 1000 : 0
    if (round > maxr) maxr = round
  }
  function median(arr, prefix, n,   i, j, t, v) {
    for (i = 1; i <= n; i++) v[i] = arr[prefix, i]
    for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
    if (n == 0) return "NA"
    return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
  }
  END {
    ns = split(servers, sl, " ")
    both = index(" " servers " ", " ota32 ") && index(" " servers " ", " nginx ")
    hdr = "| mode | clients |"; sep = "|---|---|"
    for (i = 1; i <= ns; i++) { hdr = hdr " " sl[i] " req/s | " sl[i] " MB/s | " sl[i] " CPU ms/req |"; sep = sep "---|---|---|" }
    if (both) { hdr = hdr " ota32/nginx (median of rounds) | per round |"; sep = sep "---|---|" }
    print hdr; print sep
    for (k = 1; k <= ncell; k++) {
      key = order[k]; split(key, kc, SUBSEP)
      line = "| " kc[1] " | " kc[2] " |"
      for (i = 1; i <= ns; i++) {
        s = sl[i]
        line = line sprintf(" %.0f | %.0f | %.2f |", median(req, s SUBSEP key, nr[s, key]), median(mbs, s SUBSEP key, nm[s, key]), median(cpu, s SUBSEP key, nc[s, key]))
      }
      if (both) {
        n = 0; list = ""
        for (r = 1; r <= maxr; r++)
          if (rps["nginx", key, r] > 0 && (("ota32", key, r) in rps)) { q[key, ++n] = rps["ota32", key, r] / rps["nginx", key, r]; list = list sprintf("%s%.2f", n > 1 ? " " : "", q[key, n]) }
        med = n == 0 ? "NA" : sprintf("%.2f", median(q, key, n))
        line = line " **" med "x** | " list " |"
      }
      print line
    }
  }' "$CSV" >"$OUT/summary.md"
[[ -s "$CSV" ]] && cat "$OUT/summary.md"

if [[ "$SLOW" -gt 0 ]]; then
  CLIENT="$BUILD/bench/server/serve_slow_clients"
  [[ -x "$CLIENT" ]] || die "no $CLIENT: build it (ninja -C build serve_slow_clients)"
  ulimit -n "$(ulimit -Hn)"
  "$BUILD/src/cli/ota32-serve" serve --dir "$OUT/www" --data "$DATA" --bind 127.0.0.1 --port $PORT \
    --access-log off --max-connections $((SLOW + 1000)) "${OTA32_TLS_ARGS[@]}" 2>"$OUT/logs/slow-server.log" &
  SRV=$!
  trap 'kill -TERM $SRV 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do grep -q listening "$OUT/logs/slow-server.log" && break; sleep 0.1; done
  base_kb=$(awk '/^VmRSS/ { print $2 }' /proc/$SRV/status)
  ( while kill -0 $SRV 2>/dev/null; do
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
