#!/usr/bin/env bash
# Runs every test suite of the project, as CI does: formatting, lints, and
# all tests (unit, end-to-end against the real server, the real binary and
# the examples). Usage: bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --workspace --locked

echo "== criterion micro-benchmarks, once each as tests (figures: cargo bench)"
cargo test -p ipcbus-bench --benches --locked

echo "== cargo fuzz (each target for FUZZ_SECONDS, default 60; seeds in fuzz/corpus)"
bash scripts/fuzz.sh

echo "== vermin (the Python client runs on Python 3.8, as Kodi 19 embeds)"
python3 -c "import sys; from vermin import main; sys.exit(main())" --no-tips --violations -t=3.8- clients/python/ipcbus clients/kodi examples

echo "== pytest (Python client, against the real server)"
cargo build -p ipcbus --locked
python3 -m pytest -q clients/python/tests

echo "== pytest (Kodi addon, against a real Kodi under Xvfb)"
# Needs kodi, xvfb, ffmpeg and python3-websocket (.ci/run installs them) and
# the debug ipcbus binary built above.
python3 -m pytest -q clients/kodi/tests

echo "== node --test (JavaScript client, against the real server)"
(cd clients/js && npm test)

echo "== release artifacts (scripts/dist.sh), each tested as a user gets it"
# The real release build (about 13 minutes). Needs the cross toolchain and
# cargo-deb (.ci/run sets them up) and root (dpkg -i, a noexec mount).
bash scripts/dist.sh
bash scripts/dist/test.sh
