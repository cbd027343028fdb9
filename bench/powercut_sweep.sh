#!/bin/sh
# The full power-cut sweep of a 1 MiB OTA install: the device of docs/getting-started.md part 3 (factory
# v1 flashed, rollback bootloader), a 1 MiB v2, every cut point of `device powercut-sweep --scenario S`.
# Usage: bench/powercut_sweep.sh [build/src/cli/ota32] [scenario]   (goal: within 5 minutes on 2 cores)
set -eu
O=$(realpath "${1:-build/src/cli/ota32}")
S=${2:-ota}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W"
"$O" image make -o v1.bin --chip esp32 --project simple_ota --version 1 --size 200K
"$O" image make -o v2.bin --chip esp32 --project simple_ota --version 2 --size 1M
printf 'nvs,data,nvs,0x9000,0x4000,\notadata,data,ota,0xd000,0x2000,\nphy_init,data,phy,0xf000,0x1000,\nfactory,app,factory,0x10000,1M,\nota_0,app,ota_0,,1M,\nota_1,app,ota_1,,1M,\n' >partitions.csv
"$O" part csv2bin partitions.csv partition-table.bin >/dev/null
"$O" otadata write ota_data_initial.bin --empty
"$O" image make --bootloader -o bootloader.bin --chip esp32
"$O" device new dev --chip esp32 --rollback --mac 24:0a:c4:00:00:01 >/dev/null
"$O" device flash dev 0x1000 bootloader.bin 0x8000 partition-table.bin 0xd000 ota_data_initial.bin \
  0x10000 v1.bin >/dev/null
start=$(date +%s.%N)
"$O" device powercut-sweep dev --image v2.bin --scenario "$S"
end=$(date +%s.%N)
echo "full sweep ($S, 1 MiB): $(echo "$end - $start" | bc) s"
