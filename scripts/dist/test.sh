#!/usr/bin/env bash
# Tests every artifact that scripts/dist.sh wrote into target/dist/, as a
# user gets it (scripts/dist/tests): the binaries on their own CPU (qemu-user)
# or under Wine, the .deb installed with dpkg (needs root), the wheel in a
# fresh venv, the npm tarball in an empty project, the Kodi zips in a real
# Kodi 20 under Xvfb. Usage: bash scripts/dist/test.sh [pytest options]
set -euo pipefail
cd "$(dirname "$0")/../.."
# Some tests start the debug server as a plain bus to talk to.
cargo build -p ipcbus --locked
python3 -m pytest -q -p no:cacheprovider scripts/dist/tests "$@"
