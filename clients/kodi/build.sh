#!/usr/bin/env bash
# Packs each Kodi addon under clients/kodi into target/kodi/<id>-<version>.zip,
# following the link to the shared Python package.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/../../target/kodi"
mkdir -p "$out"
for dir in "$here"/*/; do
  [ -f "$dir/addon.xml" ] || continue # tests/ is not an addon
  id=$(basename "$dir")
  version=$(sed -n 's/.*<addon [^>]*version="\([^"]*\)".*/\1/p' "$dir/addon.xml" | head -n 1)
  rm -f "$out/$id-$version.zip"
  (cd "$here" && python3 - "$id" "$out/$id-$version.zip" <<'PY'
import os, sys, zipfile
addon, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as z:
    for root, dirs, files in os.walk(addon, followlinks=True):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if not name.endswith(".pyc"):
                path = os.path.join(root, name)
                z.write(path, path)
PY
  )
  echo "$out/$id-$version.zip"
done
