#!/usr/bin/env bash
# Packs the Kodi addons under clients/kodi into target/kodi/<id>-<version>.zip
# (without bundled binaries: scripts/dist.sh makes the release zips, with
# them). Prints the path of each zip.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python3 "$here/pack.py" --out "$here/../../target/kodi"
