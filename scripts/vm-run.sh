#!/usr/bin/env bash
# Runs a command inside a qemu guest booted from Debian's stock kernel (which, unlike some hosts' kernels,
# has the kTLS `tls` module), with this machine's / as the guest's root over virtio-9p, so the guest sees
# the same binaries, libraries and build directories. See --help.
set -euo pipefail

prog=${0##*/}

cache=${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/ota32-vm
cpus=2
mem=4096
timeout_s=1800
accel=tcg
verbose=0
setup_only=0
extra_env=()

# Modules loaded in the guest (with their dependencies): 9p root, kTLS and its ciphers, virtio-rng.
guest_modules="virtio_pci 9pnet_virtio 9p tls aesni_intel ghash_clmulni_intel gcm ccm chacha20poly1305 \
chacha_x86_64 poly1305_x86_64 virtio_rng"
apt_packages=(qemu-system-x86 busybox-static kmod)

usage() {
  cat <<EOF
Usage: scripts/$prog [options] -- CMD [ARGS...]
       scripts/$prog --setup [options]

Runs CMD inside a qemu guest booted from Debian's stock kernel (apt package linux-image-amd64), whose
root filesystem is this machine's / shared over virtio-9p: the guest sees the same binaries, libraries
and build directories, starts CMD in the current directory and its exit status becomes this script's.
CMD's stdout and stderr both appear on this script's stdout; its stdin is /dev/null.
Use it to test the server's kernel-TLS path when this machine's kernel has no \`tls\` module.

The guest has its own /proc, /sys, /dev (with /dev/pts, /dev/shm), a fresh tmpfs on /tmp and /run, only
the loopback network (lo, 127.0.0.1), the modules tls, aesni_intel, ghash_clmulni_intel, gcm and
chacha20poly1305 loaded, \`ulimit -n 65536\`, and runs CMD as root. It receives PATH, HOME, LANG,
LC_ALL, TZ, CI, every OTA32_* variable and those given with --env; nothing else.
Files written under / other than /tmp, /run, /dev go to this machine (slowly, over 9p).

Needs: qemu-system-x86 busybox-static kmod (installed with apt-get when missing: root or sudo),
and apt access to download linux-image-amd64's kernel package the first time.

Options:
  --setup             only prepare (idempotent): install the missing apt packages, download and unpack
                      the current kernel package, build the initramfs. The first run does this itself.
  --cache DIR         cache directory (default: \${XDG_CACHE_HOME:-\$HOME/.cache}/ota32-vm, now
                      $cache; not under /tmp or /run, which the guest replaces); remove it to start afresh
  --cpus N            guest CPUs (default $cpus)
  --mem MiB           guest memory (default $mem)
  --timeout SEC       kill the guest after SEC seconds and exit 124 (default $timeout_s)
  --accel tcg|kvm     qemu accelerator (default tcg; kvm needs working (nested) virtualisation)
  --env NAME=VALUE    also set NAME in CMD's environment (repeatable)
  --verbose           show the kernel's boot messages and the guest's setup
  -h, --help          this text

Exit status: CMD's; 124 on timeout; 125 when the guest could not be prepared or started, or stopped
without reporting CMD's status (e.g. a kernel panic: rerun with --verbose).
EOF
}

die() {
  printf '%s: error: %s\n' "$prog" "$*" >&2
  exit 125
}
note() { if ((verbose)); then printf '%s: %s\n' "$prog" "$*" >&2; fi; }

need_arg() { [[ $# -ge 2 ]] || die "option $1 needs a value (see --help)"; }

while [[ $# -gt 0 ]]; do
  opt=$1
  if [[ $opt == --*=* ]]; then
    set -- "${opt%%=*}" "${opt#*=}" "${@:2}"
    opt=$1
  fi
  case $opt in
    -h | --help) usage; exit 0 ;;
    --setup) setup_only=1; shift ;;
    --verbose) verbose=1; shift ;;
    --cache) need_arg "$@"; cache=$2; shift 2 ;;
    --cpus) need_arg "$@"; cpus=$2; shift 2 ;;
    --mem) need_arg "$@"; mem=$2; shift 2 ;;
    --timeout) need_arg "$@"; timeout_s=$2; shift 2 ;;
    --accel) need_arg "$@"; accel=$2; shift 2 ;;
    --env) need_arg "$@"; extra_env+=("$2"); shift 2 ;;
    --) shift; break ;;
    -*) die "unknown option $opt (see --help)" ;;
    *) break ;;
  esac
done

[[ $cpus =~ ^[1-9][0-9]*$ ]] || die "--cpus wants a positive integer, not '$cpus'"
[[ $mem =~ ^[1-9][0-9]*$ ]] || die "--mem wants a size in MiB, not '$mem'"
[[ $timeout_s =~ ^[1-9][0-9]*$ ]] || die "--timeout wants a positive number of seconds, not '$timeout_s'"
[[ $accel == tcg || $accel == kvm ]] || die "--accel wants tcg or kvm, not '$accel'"
for e in "${extra_env[@]}"; do
  [[ $e =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env wants NAME=VALUE, not '$e'"
done
if ((!setup_only)) && [[ $# -eq 0 ]]; then
  die "no command given: scripts/$prog [options] -- CMD [ARGS...] (see --help)"
fi
if [[ $cache != /* ]]; then cache=$PWD/$cache; fi
# The guest sees the run directory through 9p, but it has its own /tmp, /run, /dev, /proc, /sys.
case $(readlink -m -- "$cache")/ in
  /tmp/* | /run/* | /dev/* | /proc/* | /sys/* | /var/run/*)
    die "the cache directory $cache must not be under /tmp, /run, /dev, /proc or /sys: the guest has its own" ;;
esac

# ---------------------------------------------------------------------------------------------------
# Cleanup: temporary directories (initramfs tree, kernel download, the run's directory).

tmp_paths=()
qemu_pid=''
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  local p
  if [[ -n $qemu_pid ]] && kill -0 "$qemu_pid" 2>/dev/null; then # interrupted: stop the guest first
    kill -TERM "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
  fi
  for p in "${tmp_paths[@]}"; do
    if [[ -n $p ]]; then rm -rf -- "$p"; fi
  done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# ---------------------------------------------------------------------------------------------------
# Host packages.

as_root() {
  if [[ $EUID -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

find_sbin() { # kmod's tools live in /usr/sbin, often not on a user's PATH
  local p
  for p in "$(command -v "$1" 2>/dev/null || true)" "/usr/sbin/$1" "/sbin/$1"; do
    if [[ -n $p && -x $p ]]; then
      printf '%s\n' "$p"
      return 0
    fi
  done
  return 1
}

have_packages() {
  command -v qemu-system-x86_64 >/dev/null &&
    [[ $(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null) == "install ok installed" ]] &&
    find_sbin depmod >/dev/null && find_sbin modprobe >/dev/null
}

ensure_packages() {
  have_packages && return 0
  command -v apt-get >/dev/null || die "missing packages (${apt_packages[*]}) and no apt-get to install them"
  echo "$prog: installing ${apt_packages[*]}" >&2
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    "${apt_packages[@]}" >&2; then
    as_root apt-get update >&2 || die "apt-get update failed"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      "${apt_packages[@]}" >&2 || die "apt-get install ${apt_packages[*]} failed"
  fi
  have_packages || die "packages installed but qemu-system-x86_64, static busybox or depmod still missing"
}

# ---------------------------------------------------------------------------------------------------
# The kernel: linux-image-amd64's current dependency, unpacked into $cache/kernel/KVER.

cached_kver() { # newest unpacked kernel, if any
  local d
  d=$(find "$cache/kernel" -mindepth 2 -maxdepth 2 -name .ok -printf '%h\n' 2>/dev/null | sort -V | tail -1)
  [[ -n $d ]] && printf '%s\n' "${d##*/}"
}

apt_kernel_package() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -1
}

ensure_kernel() { # sets kver
  local pkg
  kver=$(cached_kver || true)
  if [[ -n $kver ]] && ((!setup_only)); then return 0; fi
  command -v apt-cache >/dev/null || die "no apt-cache: cannot find Debian's kernel package"
  pkg=$(apt_kernel_package)
  if [[ -z $pkg ]]; then
    echo "$prog: linux-image-amd64 not in apt's lists; running apt-get update" >&2
    as_root apt-get update >&2 || die "apt-get update failed"
    pkg=$(apt_kernel_package)
  fi
  [[ -n $pkg ]] || die "kernel package not found: apt-cache depends linux-image-amd64 names no linux-image-*"
  kver=${pkg#linux-image-}
  [[ -f $cache/kernel/$kver/.ok ]] && return 0

  echo "$prog: downloading and unpacking $pkg" >&2
  local work
  work=$(mktemp -d "${TMPDIR:-/tmp}/ota32-vm-kernel.XXXXXX")
  # As root, apt-get download fetches as the user _apt, which must be able to write there.
  if [[ $EUID -eq 0 ]] && id _apt >/dev/null 2>&1; then chown _apt "$work"; fi
  tmp_paths+=("$work")
  (cd "$work" && apt-get download "$pkg" >&2) || die "apt-get download $pkg failed"
  local deb
  deb=$(find "$work" -maxdepth 1 -name '*.deb' | head -1)
  [[ -n $deb ]] || die "apt-get download $pkg produced no .deb"
  local dest=$cache/kernel/$kver
  rm -rf -- "$dest.tmp"
  tmp_paths+=("$dest.tmp")
  dpkg -x "$deb" "$dest.tmp" || die "dpkg -x $deb failed"
  rm -f -- "$deb"
  [[ -f $dest.tmp/boot/vmlinuz-$kver && -d $dest.tmp/lib/modules/$kver ]] ||
    die "$pkg has no boot/vmlinuz-$kver or lib/modules/$kver"
  rm -rf -- "$dest.tmp/usr" "$dest.tmp/etc"
  "$(find_sbin depmod)" -b "$dest.tmp" "$kver" || die "depmod for $kver failed"
  rm -rf -- "$dest"
  mv "$dest.tmp" "$dest"
  touch "$dest/.ok"
}

# ---------------------------------------------------------------------------------------------------
# The initramfs: static busybox, the modules, and this /init (its hash names the cached image).

guest_init() {
  cat <<'EOF'
#!/bin/busybox sh
# /init of scripts/vm-run.sh's guest: mount the host's / (9p) on /root with the guest's own /proc, /sys,
# /dev, /tmp, /run over it, run the command script the host left in its run directory, report its status.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
verbose=0
run=
for a in $(cat /proc/cmdline); do
  case $a in
    ota32vm.verbose=1) verbose=1 ;;
    ota32vm.run=*) run=$(echo "${a#ota32vm.run=}" | base64 -d) ;;
  esac
done
say() { if [ "$verbose" = 1 ]; then echo "vm: $*"; fi; }
halt() { sync; poweroff -f; sleep 10; }
fail() { echo "vm: error: $*"; halt; }
stty -opost 2>/dev/null # no LF -> CRLF on the serial console
echo /bin/modprobe >/proc/sys/kernel/modprobe # on-demand loads (crypto algorithms) from this initramfs
for m in @MODULES@; do
  modprobe "$m" || echo "vm: warning: modprobe $m failed"
done
grep -qw tls /proc/sys/net/ipv4/tcp_available_ulp || echo "vm: warning: no tls ULP in the guest kernel"
[ -n "$run" ] || fail "no ota32vm.run= on the kernel command line"
r=/root
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose host $r ||
  fail "cannot mount the host's / (9p tag host)"
mount -t proc proc $r/proc || fail "cannot mount proc on /proc"
mount -t sysfs sysfs $r/sys || fail "cannot mount sysfs on /sys"
mount -t devtmpfs devtmpfs $r/dev || fail "cannot mount devtmpfs on /dev"
mkdir -p $r/dev/pts $r/dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts $r/dev/pts || fail "cannot mount devpts on /dev/pts"
mount -t tmpfs -o mode=1777,nosuid,nodev shm $r/dev/shm || fail "cannot mount tmpfs on /dev/shm"
ln -sfn /proc/self/fd $r/dev/fd
ln -sfn /proc/self/fd/0 $r/dev/stdin
ln -sfn /proc/self/fd/1 $r/dev/stdout
ln -sfn /proc/self/fd/2 $r/dev/stderr
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs $r/tmp || fail "cannot mount tmpfs on /tmp"
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs $r/run || fail "cannot mount tmpfs on /run"
ip link set lo up || fail "cannot bring up lo"
[ -f "$r$run/hostname" ] && hostname "$(cat "$r$run/hostname")"
say "kernel $(uname -r), $(nproc) cpus, tcp ulp: $(cat /proc/sys/net/ipv4/tcp_available_ulp)"
[ -x "$r$run/cmd.sh" ] || fail "no command script $run/cmd.sh"
cd /
env -i chroot $r "$run/cmd.sh" </dev/null
status=$?
say "exit $status"
echo "$status" >"$r$run/status.tmp" && mv "$r$run/status.tmp" "$r$run/status"
halt
EOF
}

ensure_initrd() { # sets initrd
  local init busybox key
  init=$(guest_init)
  init=${init//@MODULES@/$guest_modules}
  busybox=$(command -v busybox 2>/dev/null || echo /bin/busybox)
  [[ -x $busybox ]] || die "no busybox (package busybox-static)"
  key=$({
    printf '%s\n' "$kver" "$init"
    sha256sum <"$busybox"
  } | sha256sum | cut -c1-16)
  initrd=$cache/initrd-$kver-$key.gz
  [[ -s $initrd ]] && return 0

  note "building $initrd"
  local kroot=$cache/kernel/$kver ir modprobe m f rel
  modprobe=$(find_sbin modprobe) || die "no modprobe (package kmod)"
  ir=$(mktemp -d "$cache/tmp.initrd.XXXXXX")
  tmp_paths+=("$ir")
  mkdir -p "$ir"/{bin,dev,proc,sys,root,tmp} "$ir/lib/modules/$kver"
  cp "$busybox" "$ir/bin/busybox"
  printf '%s\n' "$init" >"$ir/init"
  chmod 755 "$ir/init"
  local mods=()
  for m in $guest_modules; do
    while read -r f; do mods+=("$f"); done < <(
      "$modprobe" -d "$kroot" -S "$kver" --show-depends "$m" 2>/dev/null | sed -n 's/^insmod \([^ ]*\).*/\1/p'
    )
  done
  # Every crypto module too, for the algorithms the kernel loads on demand.
  while read -r f; do mods+=("$f"); done < <(
    find "$kroot/lib/modules/$kver/kernel/crypto" "$kroot/lib/modules/$kver/kernel/arch/x86/crypto" \
      "$kroot/lib/modules/$kver/kernel/lib/crypto" -name '*.ko*' 2>/dev/null
  )
  ((${#mods[@]} > 0)) || die "no modules found under $kroot/lib/modules/$kver"
  for f in "${mods[@]}"; do
    rel=${f#"$kroot/lib/modules/$kver/"}
    mkdir -p "$ir/lib/modules/$kver/${rel%/*}"
    case $f in
      *.ko.xz) xz -dc "$f" >"$ir/lib/modules/$kver/${rel%.xz}" || die "cannot decompress $f" ;;
      *.ko.zst) zstd -qdc "$f" >"$ir/lib/modules/$kver/${rel%.zst}" || die "cannot decompress $f" ;;
      *.ko.gz) gzip -dc "$f" >"$ir/lib/modules/$kver/${rel%.gz}" || die "cannot decompress $f" ;;
      *) cp "$f" "$ir/lib/modules/$kver/$rel" ;;
    esac
  done
  for f in modules.builtin modules.builtin.modinfo modules.order; do
    if [[ -f $kroot/lib/modules/$kver/$f ]]; then cp "$kroot/lib/modules/$kver/$f" "$ir/lib/modules/$kver/"; fi
  done
  "$(find_sbin depmod)" -b "$ir" "$kver" || die "depmod for the initramfs failed"
  (cd "$ir" && find . -mindepth 1 | LC_ALL=C sort | "$ir/bin/busybox" cpio -o -H newc 2>/dev/null) |
    gzip -1 >"$initrd.tmp.$$" || die "cannot build the initramfs"
  mv "$initrd.tmp.$$" "$initrd"
}

prepare() {
  mkdir -p "$cache/kernel" "$cache/run" || die "cannot create the cache directory $cache"
  ensure_packages
  exec 9>"$cache/.lock"
  flock 9 || die "cannot lock $cache/.lock"
  ensure_kernel
  ensure_initrd
  flock -u 9
  exec 9>&-
  vmlinuz=$cache/kernel/$kver/boot/vmlinuz-$kver
}

kver='' initrd='' vmlinuz=''
prepare
if ((setup_only)); then
  echo "$prog: ready: kernel $kver, $initrd"
  exit 0
fi

# ---------------------------------------------------------------------------------------------------
# The run: a directory the guest sees (not under /tmp, which is the guest's own tmpfs) holding the
# command script; the guest writes CMD's exit status there.

run_dir=$(mktemp -d "$cache/run/XXXXXXXX")
tmp_paths+=("$run_dir")
chmod 755 "$run_dir"
cat /proc/sys/kernel/hostname >"$run_dir/hostname" 2>/dev/null || true

{
  printf '#!%s\n' "$BASH"
  for name in PATH HOME LANG LC_ALL TZ CI $(compgen -e | grep '^OTA32_' || true); do
    if [[ -n ${!name+set} ]]; then printf 'export %s=%q\n' "$name" "${!name}"; fi
  done
  for e in "${extra_env[@]}"; do printf 'export %s=%q\n' "${e%%=*}" "${e#*=}"; done
  printf 'ulimit -n 65536 || echo "vm: warning: ulimit -n 65536 failed" >&2\n'
  printf 'umask %s\n' "$(umask)"
  printf 'cd -- %q || { echo "vm: error: cannot cd to %q" >&2; exit 125; }\n' "$PWD" "$PWD"
  printf 'exec'
  printf ' %q' "$@"
  printf '\n'
} >"$run_dir/cmd.sh"
chmod 755 "$run_dir/cmd.sh"

command -v qemu-system-x86_64 >/dev/null || die "no qemu-system-x86_64 (package qemu-system-x86)"
if [[ $accel == kvm && ! -w /dev/kvm ]]; then die "--accel kvm: /dev/kvm is missing or not writable"; fi

append="console=ttyS0 panic=-1 mitigations=off ota32vm.run=$(printf '%s' "$run_dir" | base64 -w0)"
if ((verbose)); then append+=" ota32vm.verbose=1"; else append+=" quiet loglevel=0"; fi
# As root, 9p passes ownership through; otherwise qemu cannot chown and "none" ignores that.
if [[ $EUID -eq 0 ]]; then sec_model=passthrough; else sec_model=none; fi

# shellcheck disable=SC2054 # commas inside qemu option values
qemu=(qemu-system-x86_64 -accel "$accel" -cpu max -smp "$cpus" -m "$mem"
  -nodefaults -no-user-config -no-reboot -display none -monitor none
  -chardev stdio,id=con,signal=off -serial chardev:con
  -kernel "$vmlinuz" -initrd "$initrd" -append "$append"
  -virtfs "local,path=/,mount_tag=host,security_model=$sec_model,id=host,multidevs=remap"
  -device virtio-rng-pci -nic none)
note "booting: ${qemu[*]}"

qemu_status=0
# In the background so that a signal to this script runs its traps (which stop qemu) at once.
timeout --foreground -k 10 "$timeout_s" "${qemu[@]}" </dev/null &
qemu_pid=$!
wait "$qemu_pid" || qemu_status=$?
qemu_pid=''
if [[ $qemu_status -eq 124 ]]; then
  printf '%s: error: timed out after %s s; guest killed\n' "$prog" "$timeout_s" >&2
  exit 124
fi
if [[ -f $run_dir/status ]]; then
  status=$(<"$run_dir/status")
  [[ $status =~ ^[0-9]+$ ]] || die "the guest reported a bad exit status '$status'"
  exit "$status"
fi
if [[ $qemu_status -ne 0 ]]; then die "qemu failed (exit $qemu_status)"; fi
die "the guest stopped without reporting the command's exit status (kernel panic? rerun with --verbose)"
