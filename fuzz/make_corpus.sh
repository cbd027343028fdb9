#!/usr/bin/env bash
# Regenerates the seed corpora in fuzz/corpus/<target>/ from small valid inputs made by ota32's own tools
# (ota32 part csv2bin, ota32 otadata write, ota32 image elf2image) and a tiny ELF32 writer. Each seed starts
# with the option bytes its target reads first (see the target's InputSplitter calls). Files named crash-*
# are regression inputs found by fuzzing: this script leaves them alone.
#   fuzz/make_corpus.sh [path/to/ota32]     (default: build/src/cli/ota32)
set -euo pipefail
cd "$(dirname "$0")/.."
OTA32=${1:-build/src/cli/ota32}
C=fuzz/corpus
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p $C/{partition_csv,partition_bin,otadata,app_image,elf,url,http_response,range,der_san,http_request,signature_block}
rm -f $C/*/seed-*

# A file = option bytes (printf escapes) + a file's or a string's bytes.
seed() {  # seed TARGET NAME OPTION_BYTES [FILE]
  { printf "$3"; if [[ $# -ge 4 ]]; then cat "$4"; else cat; fi; } > "$C/$1/seed-$2"
}

# ---- partition tables: CSVs like ESP-IDF's examples, and their binaries ----
cat > $tmp/factory.csv <<'CSV'
# Name,   Type, SubType, Offset,  Size, Flags
nvs,      data, nvs,     0x9000,  0x6000,
phy_init, data, phy,     0xf000,  0x1000,
factory,  app,  factory, 0x10000, 1M,
CSV
cat > $tmp/two_ota.csv <<'CSV'
# Name,   Type, SubType, Offset,   Size, Flags
nvs,      data, nvs,     ,        0x4000,
otadata,  data, ota,     ,        0x2000,
phy_init, data, phy,     ,        0x1000,
factory,  app,  factory, ,        1M,
ota_0,    app,  ota_0,   ,        1M,
ota_1,    app,  ota_1,   ,        1M,
CSV
cat > $tmp/flags.csv <<'CSV'
nvs_key, data, nvs_keys, 0x9000, 0x1000, encrypted
nvs,     data, nvs,      ,       0x3000, readonly
otadata, data, ota,      ,       8K,
ota_0,   app,  ota_0,    0x20000, $SIZE, encrypted:readonly
ota_1,   app,  ota_1,    ,        -0x300000,
storage, data, spiffs,   ,        256K,
custom,  0x40, 0x12,     ,        4K,
CSV
cat > $tmp/bootloader.csv <<'CSV'
bootloader, bootloader, primary, N/A, N/A,
pt,         partition_table, primary, N/A, N/A,
nvs,        data, nvs, , 24K,
factory,    app, factory, , 0x100000,
CSV
for f in factory two_ota flags; do seed partition_csv $f '\000' $tmp/$f.csv; done
seed partition_csv bootloader '\002' $tmp/bootloader.csv
seed partition_csv offset9000 '\001' <<'CSV'
nvs,data,nvs,0xa000,0x5000,
factory,app,factory,0x10000,0x100000,
CSV
for f in factory two_ota; do
  "$OTA32" part csv2bin -q $tmp/$f.csv $tmp/$f.bin
  seed partition_bin $f '\000' $tmp/$f.bin
done
"$OTA32" part csv2bin -q --disable-md5sum $tmp/two_ota.csv $tmp/nomd5.bin
seed partition_bin two_ota_nomd5 '\001' $tmp/nomd5.bin

# ---- otadata: short seeds are the two 32-byte entries (option bytes: flags, slot count, slot, mask) ----
entries() {  # entries OUT -- two `ota32 otadata write` argument lists separated by '--'
  local out=$1 a=() b=()
  shift
  while [[ $1 != -- ]]; do a+=("$1"); shift; done
  shift
  b=("$@")
  "$OTA32" otadata write "${a[@]}" --entry 0 $tmp/e0.bin
  "$OTA32" otadata write "${b[@]}" --entry 1 $tmp/e1.bin
  { head -c 32 $tmp/e0.bin; tail -c +4097 $tmp/e1.bin | head -c 32; } > "$out"
}
entries $tmp/valid.ent --seq 1 --state VALID -- --seq 2 --state VALID
seed otadata two_valid '\000\002\000\377\377' $tmp/valid.ent
entries $tmp/pending.ent --seq 3 --state VALID -- --seq 4 --state PENDING_VERIFY
seed otadata pending_rollback '\002\002\001\377\377' $tmp/pending.ent
entries $tmp/new.ent --seq 5 --state ABORTED -- --seq 6 --state NEW
seed otadata new_anti_rollback '\016\004\003\005\000' $tmp/new.ent
"$OTA32" otadata write --empty $tmp/initial.bin
seed otadata initial_image '\000\002\001\377\377' $tmp/initial.bin

# ---- ELF files and the app / bootloader images elf2image makes of them (no IROM: they stay small) ----
python3 - "$tmp" <<'PY'
import struct, sys
def elf(path, machine, entry, secs):
    out = bytearray(52); strtab = b"\0"; placed = []
    for name, typ, flags, addr, data in secs:
        placed.append((len(out), len(strtab))); strtab += name + b"\0"; out += data
    shstr = len(strtab); strtab += b".shstrtab\0"
    stroff = len(out); out += strtab
    while len(out) % 4: out += b"\0"
    phoff = len(out); first = secs[0]
    out += struct.pack("<8I", 1, placed[0][0], first[3], first[3], len(first[4]), len(first[4]), first[2], 4)
    shoff = len(out); out += bytes(40)
    for (name, typ, flags, addr, data), (off, noff) in zip(secs, placed):
        out += struct.pack("<6I", noff, typ, flags, addr, off, len(data)) + bytes(16)
    out += struct.pack("<6I", shstr, 3, 0, 0, stroff, len(strtab)) + bytes(16)
    out[0:7] = b"\x7fELF\x01\x01\x01"
    struct.pack_into("<HHIIII", out, 16, 2, machine, 1, entry, phoff, shoff)
    struct.pack_into("<HHHHHH", out, 40, 52, 32, 1, 40, len(secs) + 2, len(secs) + 1)
    open(path, "wb").write(out)
desc = struct.pack("<II", 0xABCD5432, 0) + bytes(8) + b"1.0".ljust(32, b"\0") + b"fuzz".ljust(32, b"\0")
desc = desc.ljust(256, b"\0")
elf(sys.argv[1] + "/app.elf", 0x5E, 0x40080000, [
    (b".flash.appdesc", 1, 2, 0x3F400020, desc), (b".flash.rodata", 1, 2, 0x3F400120, b"\x22" * 0x40),
    (b".dram0.data", 1, 3, 0x3FFB0000, b"\x33" * 0x30), (b".dram0.bss", 8, 3, 0x3FFB0030, b""),
    (b".iram0.text", 1, 6, 0x40080000, b"\x44" * 0x200)])
elf(sys.argv[1] + "/app_c3.elf", 0xF3, 0x40380000, [
    (b".flash.appdesc", 1, 2, 0x3C000020, desc), (b".dram0.data", 1, 3, 0x3FC80000, b"\x55" * 0x20),
    (b".iram0.text", 1, 6, 0x40380000, b"\x66" * 0x100)])
elf(sys.argv[1] + "/boot.elf", 0x5E, 0x40080400, [
    (b".dram0.rodata", 1, 2, 0x3FFF0000, b"\x77" * 0x50), (b".iram_loader.text", 1, 6, 0x40078000, b"\x88" * 0x80),
    (b".iram.text", 1, 6, 0x40080400, b"\x99" * 0x100)])
elf(sys.argv[1] + "/esp8266.elf", 0x5E, 0x40100004, [
    (b".text", 1, 6, 0x40100000, b"\x44" * 0x100), (b".data", 1, 3, 0x3FFE8000, b"\x33" * 0x20),
    (b".irom0.text", 1, 6, 0x40210010, b"\x66" * 0x44)])
PY
# elf target: option bytes = flags (use_segments, no digest, sha256 at 0xb0, mode, pad), chip index (low 6
# bits; the top 2: default layout, --ram-only-header, ESP8266 --version 3, --version 2).
seed elf app '\004\000' $tmp/app.elf
seed elf app_segments '\011\000' $tmp/app.elf
seed elf app_c3 '\000\004' $tmp/app_c3.elf
seed elf boot '\002\000' $tmp/boot.elf
seed elf app_ram_only '\000\100' $tmp/app.elf
seed elf esp8266_v3 '\000\200' $tmp/esp8266.elf
seed elf esp8266_v2 '\000\300' $tmp/esp8266.elf
"$OTA32" image elf2image -c esp32 --elf-sha256-offset 0xb0 -o $tmp/app.bin $tmp/app.elf > /dev/null
"$OTA32" image elf2image -c esp32c3 -o $tmp/app_c3.bin $tmp/app_c3.elf > /dev/null
"$OTA32" image elf2image -c esp32 -o $tmp/boot.bin $tmp/boot.elf > /dev/null
seed app_image app '\000' $tmp/app.bin
seed app_image app_fixsum_v1 '\011' $tmp/app.bin
seed app_image app_c3 '\002' $tmp/app_c3.bin
seed app_image boot '\001' $tmp/boot.bin

# ---- agent URLs (URL, then "\n--\n", then a redirect Location) ----
printf 'https://ota.example.com:8443/fw/app.bin?v=2#frag\n--\n../other/app.bin' > $C/url/seed-https
printf 'http://192.168.1.10/app.bin\n--\n//cdn.example.net/x.bin' > $C/url/seed-ipv4
printf 'https://user@[fe80::1%%25eth0]:443\n--\n/abs/path?q=1' > $C/url/seed-ipv6
printf 'HTTP://Example.COM:80?only=query\n--\nhttps://elsewhere.example/' > $C/url/seed-query

# ---- HTTP responses (option bytes: flags, 4 piece sizes, read size) ----
seed http_response content_length '\000\003\177\001\020\100' <<'HTTP'
HTTP/1.1 200 OK
Content-Type: application/octet-stream
Content-Length: 16

0123456789abcdef
HTTP
printf 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n' |
  seed http_response chunked '\020\001\002\003\004\005'
printf 'HTTP/1.0 200 OK\r\nServer: s_server\r\n\r\nbody until close' | seed http_response close '\001\377\377\377\377\377'
printf 'HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 10-19/100\r\nContent-Length: 10\r\n\r\n0123456789' |
  seed http_response partial '\040\007\007\007\007\007'
printf 'HTTP/1.1 304 Not Modified\r\nETag: "abc"\r\n\r\n' | seed http_response not_modified '\002\000\000\000\000\000'
printf 'HTTP/1.1 302 Found\r\nLocation: /next\r\nContent-Length: 0\r\n\r\n' | seed http_response redirect '\000\010\010\010\010\010'

# ---- Range / If-None-Match / If-Range (flags, size, then the four header values) ----
seed range simple '\070\144\000\000\000' < <(printf 'bytes=0-49\n--\n"v1"\n--\n"v1"\n--\n"v1"')
seed range suffix '\010\000\020\000\000' < <(printf 'bytes=-100\n--\nW/"a", "b"\n--\n"b"\n--\n"b"')
seed range open_end '\012\001\000\000\000\377\377\377\377' < <(printf 'bytes= 4096 -\n--\n*\n--\n\n--\n"big"')
seed range past_end '\014\010\000\000\000' < <(printf 'bytes=100-200\n--\n"x"\n--\n"y"\n--\n"z"')
# ---- server certificates as the agent sees them (host length, host, DER certificate) ----
cert() {  # cert NAME HOST SUBJECT [SAN]
  local ext=()
  [[ $# -ge 4 ]] && ext=(-addext "subjectAltName=$4")
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $tmp/k.pem -days 1 \
    -subj "$3" "${ext[@]}" -outform DER -out $tmp/$1.der 2> /dev/null
  seed der_san "$1" "$(printf '\\%03o' ${#2})$2" $tmp/$1.der
}
cert san_ip 127.0.0.1 /CN=ota32 'IP:127.0.0.1,IP:::1,DNS:localhost'
cert san_wildcard a.example.com /CN=ota32 'DNS:*.example.com,DNS:example.com'
cert cn_only ota.example.net /CN=ota.example.net
cert san_v6 ::1 /O=ota32 'IP:fe80::1,IP:::1'

# ---- requests as ota32 serve reads them (piece-size seed length, seed, request bytes) ----
printf 'GET /fw/app.bin?v=2&x=%%41+b HTTP/1.1\r\nHost: 127.0.0.1\r\nRange: bytes=0-\r\n\r\n' |
  seed http_request get '\002\003\021'
printf 'POST /api/v1/devices/24%%3A0a/report HTTP/1.1\r\nHost: h\r\nContent-Length: 13\r\n\r\n{"state":"x"}' |
  seed http_request post_length '\001\005'
printf 'POST /api/v1/devices/d1/report HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nabcd\r\n0\r\nT: 1\r\n\r\n' |
  seed http_request chunked '\003\001\007\023'
printf 'POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\nabc' |
  seed http_request smuggle '\000'
printf 'GET /static/a/b.js HTTP/1.0\r\nAuthorization: Bearer t \r\n\r\n' | seed http_request http10 '\001\001'
printf 'PUT /throws HTTP/1.1\r\nHost: a\r\nHost: b\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\nGET / HTTP/1.1\r\n\r\n' |
  seed http_request two_hosts '\000'

# ---- Secure Boot v2 signature sectors (mend byte, sector): RSA, P-256 and P-384 blocks ----
python3 - "$C/signature_block/seed-three_blocks" << 'PY'
import sys
s = bytearray(b'\xff' * 4096)
def block(i, version, sha, curve_at, curve):
    b = 1216 * i
    s[b:b + 1196] = bytes((j * 7 + i) & 0xff for j in range(1196))
    s[b], s[b + 1], s[b + 2] = 0xE7, version, sha
    if curve_at: s[b + curve_at] = curve
block(0, 2, 0, 0, 0)
block(1, 3, 0, 36, 2)
block(2, 3, 1, 52, 3)
open(sys.argv[1], 'wb').write(b'\x3f' + bytes(s))
PY
printf '\x07\xe7\x03' | seed signature_block short_file '' 
echo "make_corpus: $(ls $C/*/seed-* | wc -l) seeds in $C"
