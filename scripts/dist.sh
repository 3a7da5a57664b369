#!/usr/bin/env bash
# Builds every release artifact into target/dist/:
#   ipcbus-VER-{x86_64,aarch64,armv7}-linux.tar.gz   static Linux binaries
#   ipcbus-VER-x86_64-windows.zip                     the Windows build
#   each with a .sha256, and all of them in SHA256SUMS
#   ipcbus_VER-1_{amd64,arm64,armhf}.deb              Debian packages (cargo-deb)
#   kodi/*.zip, kodi-repo/                            the Kodi addons, with the bus
#   python/ipcbus-VER{.tar.gz,-py3-none-any.whl}      the Python client
#   ipcbus-VER.tgz                                    the JavaScript client (npm pack)
#
# Usage: bash scripts/dist.sh [--profile dist|dist-check] [--kodi-repo-url URL]
#   --profile dist        the release artifacts (default): fat LTO; about
#                         15 minutes on 2 cores for the four targets
#   --profile dist-check  the same code and targets without LTO, for
#                         iterating on these scripts: a rebuild after a
#                         change takes seconds instead of a minute a target
#   --kodi-repo-url URL   where target/dist/kodi-repo/ will be served from
#
# It first runs scripts/dist/toolchain.sh (root, for apt-get), which gets
# the cross toolchain from Debian's packages alone. scripts/dist/test.sh
# then tests every artifact.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

profile=dist
kodi_repo_url=https://example.invalid/ipcbus/kodi-repo/
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile=$2; shift 2 ;;
    --kodi-repo-url) kodi_repo_url=$2; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \?//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$profile" in dist|dist-check) ;; *) echo "--profile must be dist or dist-check" >&2; exit 2 ;; esac

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
out=$repo/target/dist
build=$repo/target/cross
rm -rf "$out"
mkdir -p "$out"
# What the artifact tests hold the sizes to (docs/benchmarks.md, Binary size).
echo "$profile" > "$out/PROFILE"

bash scripts/dist/toolchain.sh
toolchain=$repo/target/cross-toolchain

# name:triple:compiler. The host's own cargo builds x86_64; Debian's
# rustc-web builds the rest, with std built from its source (-Zbuild-std), so
# no per-architecture package of Debian's is needed (and std takes part in
# the link-time optimisation). Every Linux build is static (+crt-static): no shared
# library of the device is needed, whatever its glibc.
targets=(
  "x86_64-linux:x86_64-unknown-linux-gnu:host"
  "aarch64-linux:aarch64-unknown-linux-gnu:debian"
  "armv7-linux:armv7-unknown-linux-gnueabihf:debian"
  "x86_64-windows:x86_64-pc-windows-gnu:debian"
)
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
# With --target, RUSTFLAGS reach only the target's code, not build scripts.
# +crt-static: Linux builds link glibc statically, and the .exe links
# libgcc and winpthreads in, so it needs no DLL beside it.
export RUSTFLAGS="-C target-feature=+crt-static"
# cargo-deb has no --target-dir.
export CARGO_TARGET_DIR=$build

for spec in "${targets[@]}"; do
  IFS=: read -r name triple compiler <<<"$spec"
  echo "== build $name ($triple, profile $profile)"
  start=$(date +%s)
  case "$compiler" in
    host)
      cargo build --locked -p ipcbus --profile "$profile" --target "$triple" ;;
    debian)
      (. "$toolchain/env.sh" && RUSTC_BOOTSTRAP=1 cargo build --locked -p ipcbus --profile "$profile" \
        --target "$triple" -Zbuild-std) ;;
  esac
  echo "   built in $(( $(date +%s) - start )) s"
  exe=ipcbus
  [[ $triple == *windows* ]] && exe=ipcbus.exe
  stage=$out/stage/ipcbus-$version-$name
  mkdir -p "$stage"
  cp "$build/$triple/$profile/$exe" "$stage/"
  cp README.md "$stage/"
  if [[ $triple == *windows* ]]; then
    (cd "$out/stage" && rm -f "$out/ipcbus-$version-$name.zip" \
      && python3 -m zipfile -c "$out/ipcbus-$version-$name.zip" "ipcbus-$version-$name")
  else
    cp scripts/dist/systemd/ipcbus.service "$stage/"
    tar -C "$out/stage" --owner=0 --group=0 -czf "$out/ipcbus-$version-$name.tar.gz" "ipcbus-$version-$name"
  fi
done

echo "== Debian packages (cargo-deb)"
for spec in "${targets[@]}"; do
  IFS=: read -r name triple _ <<<"$spec"
  [[ $triple == *linux* ]] || continue
  cargo deb --no-build --no-strip -p ipcbus --target "$triple" --profile "$profile" --output "$out/"
done

echo "== Kodi addons and repository"
python3 clients/kodi/pack.py --out "$out/kodi" --repo "$out/kodi-repo" --repo-url "$kodi_repo_url" \
  --bin "linux-x86_64=$build/x86_64-unknown-linux-gnu/$profile/ipcbus" \
  --bin "linux-aarch64=$build/aarch64-unknown-linux-gnu/$profile/ipcbus" \
  --bin "linux-armv7=$build/armv7-unknown-linux-gnueabihf/$profile/ipcbus" \
  --bin "windows-x86_64=$build/x86_64-pc-windows-gnu/$profile/ipcbus.exe"

echo "== Python client (sdist and wheel)"
rm -rf clients/python/build
python3 -m build --sdist --wheel --outdir "$out/python" clients/python
python3 -m twine check --strict "$out"/python/*

echo "== JavaScript client (npm pack)"
(cd clients/js && npm pack --silent --pack-destination "$out" >/dev/null)

echo "== checksums"
# One NAME.sha256 beside each file (for `sha256sum -c` where it was
# downloaded), and SHA256SUMS for all of them.
(cd "$out" && files=(*.tar.gz *.zip *.deb *.tgz kodi/*.zip python/*) && for f in "${files[@]}"; do
  (cd "$(dirname "$f")" && sha256sum "$(basename "$f")" > "$(basename "$f").sha256")
done && sha256sum "${files[@]}" > SHA256SUMS)
rm -rf "$out/stage"
echo "== target/dist"
(cd "$out" && ls -l --time-style=+ ./*.tar.gz ./*.zip ./*.deb ./*.tgz kodi python kodi-repo)
