#!/usr/bin/env bash
# The cross toolchain for scripts/dist.sh, from Debian's packages alone (no
# rustup download): gcc cross linkers, qemu-user and mingw from apt; and,
# unpacked (not installed) under $ROOT, Debian's rustc-web/cargo-web with the
# same version's std source, from which -Zbuild-std builds std for every
# cross target, and Wine 8 to run the .exe. Only amd64 package lists are
# needed: a mirror whose arm index is mid-sync cannot stop the build.
# Usage: bash scripts/dist/toolchain.sh   (then: . $ROOT/env.sh)
# Needs root for the apt-get install; the rest uses a private apt state,
# so /etc/apt is left as it is. Takes about a minute when the packages are
# not yet here, and nothing when they are.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ROOT=${ROOT:-$here/../../target/cross-toolchain}
mkdir -p "$ROOT"
ROOT=$(cd "$ROOT" && pwd)
# The workspace's rust-version: Debian's compiler must be at least this.
MIN_RUST=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' "$here/../../Cargo.toml")

# Another apt may hold the dpkg lock, and a mirror may be mid-sync ("File
# has unexpected size"): retry for up to 10 minutes before giving up.
apt_get() {
  for _ in $(seq 1 60); do
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=10 -o Acquire::Retries=3 "$@" && return 0
    echo "apt-get $1 failed (dpkg lock held, or a mirror mid-sync?); retrying in 10 s" >&2
    sleep 10
  done
  echo "apt-get $1 kept failing for 10 minutes" >&2
  return 1
}

# 1) cross linkers, qemu-user, mingw (ordinary install from the system's sources)
need=()
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(crossbuild-essential-arm64)
command -v arm-linux-gnueabihf-gcc >/dev/null || need+=(crossbuild-essential-armhf)
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
command -v x86_64-w64-mingw32-gcc >/dev/null || need+=(gcc-mingw-w64-x86-64)
if [ ${#need[@]} -gt 0 ]; then
  apt_get update -qq
  apt_get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ -f "$ROOT/env.sh" ] && [ -x "$ROOT/wine/usr/lib/wine/wine64" ]; then
  echo "cross toolchain already in $ROOT"
  exit 0
fi

# 2) a private apt state with amd64 package lists (bookworm-security has the
# newest rustc-web), from the mirrors this machine already uses.
mkdir -p "$ROOT"/{apt/lists/partial,apt/cache/archives/partial,apt/etc/none.d,debs,sysroot}
SRC=/etc/apt/sources.list.d/debian.sources
if [ -f "$SRC" ]; then
  MAIN=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' "$SRC")
  SEC=$(awk '/^URIs:/ && $2 ~ /security/ {print $2; exit}' "$SRC")
fi
MAIN=${MAIN:-http://deb.debian.org/debian}
SEC=${SEC:-http://deb.debian.org/debian-security}
cat > "$ROOT/apt/etc/sources.list" <<EOS
deb [arch=amd64] $MAIN bookworm main
deb [arch=amd64] $SEC bookworm-security main
EOS
cat > "$ROOT/apt/apt.conf" <<EOS
Dir::Etc::SourceList "$ROOT/apt/etc/sources.list";
Dir::Etc::SourceParts "$ROOT/apt/etc/none.d";
Dir::State::Lists "$ROOT/apt/lists";
Dir::Cache "$ROOT/apt/cache";
APT::Architectures { "amd64"; };
EOS
export APT_CONFIG="$ROOT/apt/apt.conf"
apt_get update -qq

VER=$(apt-cache policy rustc-web | awk '/Candidate:/{print $2}')
[ -n "$VER" ] && [ "$VER" != "(none)" ] || { echo "Debian has no rustc-web package here" >&2; exit 1; }
upstream=${VER#*:}; upstream=${upstream%%+*}
if [ "$(printf '%s\n%s\n' "$MIN_RUST" "$upstream" | sort -V | head -n1)" != "$MIN_RUST" ]; then
  echo "Debian's rustc-web is $upstream; the workspace needs $MIN_RUST or newer" >&2
  exit 1
fi
echo "rustc-web $VER"
# The compiler and cargo, with whatever this machine lacks of what they need;
# the std source for -Zbuild-std; Wine 8 and the zlib it loads.
want=()
for p in $(apt-get -s install --no-install-recommends rustc-web cargo-web | awk '/^Inst /{print $2}'); do
  want+=("$p:amd64")
done
want+=("rust-web-src=$VER")
(cd "$ROOT/debs" && apt_get download "${want[@]}" 2>&1 | grep -v unsandboxed || true)
for p in rust-web-src_ rustc-web_ cargo-web_; do
  compgen -G "$ROOT/debs/$p*.deb" >/dev/null || { echo "download of ${p%%_*} failed" >&2; exit 1; }
done
for f in "$ROOT"/debs/*.deb; do dpkg -x "$f" "$ROOT/sysroot"; done

mkdir -p "$ROOT/wine-debs"
(cd "$ROOT/wine-debs" && apt_get download wine64:amd64 libwine:amd64 libz-mingw-w64 2>&1 | grep -v unsandboxed || true)
for f in "$ROOT"/wine-debs/*.deb; do dpkg -x "$f" "$ROOT/wine"; done
# Debian's wineserver wrapper names /usr/lib/wine/wineserver64 outright.
printf '#!/bin/sh -e\nexec %s -p0 "$@"\n' "$ROOT/wine/usr/lib/wine/wineserver64" > "$ROOT/wine/usr/lib/wine/wineserver"
chmod +x "$ROOT/wine/usr/lib/wine/wineserver"

D="$ROOT/sysroot/usr"
cat > "$ROOT/env.sh" <<EOS
# Source me: Debian's rustc-web as rustc/cargo (ahead of rustup's proxies).
export PATH=$D/bin:\$PATH
export LD_LIBRARY_PATH=$D/lib/x86_64-linux-gnu\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
export RUSTC=$D/bin/rustc RUSTDOC=$D/bin/rustdoc CARGO=$D/bin/cargo
export IPCBUS_WINE=$ROOT/wine
EOS
. "$ROOT/env.sh"
rustc -V
cargo -V
