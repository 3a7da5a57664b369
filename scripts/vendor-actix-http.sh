#!/usr/bin/env bash
# Makes vendor/actix-http again: actix-http VERSION as crates.io publishes
# it, its examples, tests and benches left out, with vendor/actix-http.patch
# applied (vendor/README.md says what the patch does and why).
#
#   scripts/vendor-actix-http.sh [VERSION]     (default: the vendored one)
#
# To move to a newer actix-http: run it with the new version, build, run
# the tests and the footprint benchmark (docs/benchmarks.md), and fix the
# patch by hand if it no longer applies.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=$root/vendor/actix-http
version=${1:-$(sed -n 's/^version = "\(.*\)"$/\1/p' "$dest/Cargo.toml" | head -1)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
curl -sSfL -o "$work/crate.tar.gz" \
  "https://static.crates.io/crates/actix-http/actix-http-$version.crate"
tar xzf "$work/crate.tar.gz" -C "$work"
src=$work/actix-http-$version
mkdir "$work/new"
cp -r "$src"/{src,Cargo.toml,README.md,CHANGES.md,LICENSE-APACHE,LICENSE-MIT} "$work/new/"
# Only the library: the targets and dev-dependencies of its own tests go.
python3 - "$work/new/Cargo.toml" <<'PY'
import sys
path = sys.argv[1]
kept, skip = [], False
for line in open(path).read().split("\n"):
    if line.startswith("["):
        skip = line.startswith(("[[example]]", "[[test]]", "[[bench]]", "[dev-dependencies"))
    if not skip:
        kept.append(line)
open(path, "w").write("\n".join(kept))
PY
patch -d "$work/new" -p1 --no-backup-if-mismatch < "$root/vendor/actix-http.patch"
rm -rf "$dest"
mv "$work/new" "$dest"
echo "vendor/actix-http: actix-http $version with vendor/actix-http.patch"
