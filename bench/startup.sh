#!/bin/sh
# Whole-process time and peak RSS of the format commands and `device boot` of a small app, against an empty C
# program (the floor any process pays here: exec, the loader, libc). Usage: bench/startup.sh [BUILD_DIR] [RUNS]
# Prints one row per command: median wall ms (hyperfine -N, RUNS runs after a warm-up), the ratio to the empty
# program's median, and the peak RSS (/usr/bin/time's maximum resident set size).
set -eu
build=${1:-build}
runs=${2:-300}
ota32=$(realpath "$build/src/cli/ota32")
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
printf 'int main(void) { return 0; }\n' > empty.c
cc -O2 -o empty empty.c
printf 'nvs,data,nvs,0x9000,0x4000,\notadata,data,ota,0xd000,0x2000,\nphy_init,data,phy,0xf000,0x1000,\nfactory,app,factory,0x10000,1M,\nota_0,app,ota_0,,1M,\nota_1,app,ota_1,,1M,\n' > partitions.csv
"$ota32" part csv2bin -q partitions.csv pt.bin
"$ota32" otadata write otadata.bin --empty > /dev/null
"$ota32" image make -o app.bin --chip esp32 --project bench --version 1 --size 66000
"$ota32" image make -o bootloader.bin --chip esp32 --bootloader
"$ota32" device new dev --chip esp32 > /dev/null
"$ota32" device flash dev 0x1000 bootloader.bin 0x8000 pt.bin 0xd000 otadata.bin 0x10000 app.bin > /dev/null

set -- "./empty" \
  "$ota32 --version" \
  "$ota32 part csv2bin -q partitions.csv out.bin" \
  "$ota32 part bin2csv -q pt.bin out.csv" \
  "$ota32 part info pt.bin" \
  "$ota32 otadata read otadata.bin -p pt.bin" \
  "$ota32 image info app.bin" \
  "$ota32 image verify app.bin" \
  "$ota32 device boot dev"
hyperfine -N --style none --warmup 20 --runs "$runs" --export-json times.json "$@" > /dev/null 2>&1
echo "| command | median wall ms | / empty program | peak RSS KiB |"
echo "|---|---|---|---|"
i=0
for cmd in "$@"; do
  # shellcheck disable=SC2086
  rss=$(/usr/bin/time -f %M $cmd 2>&1 >/dev/null | tail -1)
  python3 - "$i" "$cmd" "$rss" "$ota32" <<'PY'
import json, sys
i, cmd, rss, ota32 = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
r = json.load(open("times.json"))["results"]
med = r[i]["median"] * 1000
base = r[0]["median"] * 1000
print(f"| `{cmd.replace(ota32, 'ota32')}` | {med:.2f} | {med / base:.2f}x | {rss} |")
PY
  i=$((i + 1))
done
