#!/usr/bin/env bash
# Fuzzes each cargo-fuzz target of fuzz/ for FUZZ_SECONDS (default 60), from
# the seed corpus in fuzz/corpus/<target>/, on the stable toolchain. Exits
# non-zero if a target crashes; libFuzzer leaves the input in
# fuzz/artifacts/<target>/, and copying it to fuzz/regressions/<target>/ makes
# `cargo test` replay it from then on.
# Usage: FUZZ_SECONDS=20 bash scripts/fuzz.sh [target...]
#        bash scripts/fuzz.sh --setup   (install cargo-fuzz and fetch crates only)
set -euo pipefail
cd "$(dirname "$0")/.."

# Sanitizer. libFuzzer's coverage instrumentation takes only stable `-C`
# flags, so with `-s none` cargo fuzz runs on the stable toolchain as it is.
# AddressSanitizer needs `-Zsanitizer=address`, which stable accepts only with
# RUSTC_BOOTSTRAP=1 (its runtime ships in stable's rust-std). That works here
# too, but runs 3 to 6 times slower, and the code under test is safe Rust
# (the protocol crate forbids `unsafe`): what we hunt are panics, which both
# catch. So ASan is opt-in: FUZZ_SANITIZER=address.
sanitizer="${FUZZ_SANITIZER:-none}"
if [ "$sanitizer" != none ]; then
  export RUSTC_BOOTSTRAP=1
fi

# Pinned, so that a new cargo-fuzz cannot change CI under us.
cargo_fuzz_version=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -qF "$cargo_fuzz_version"; then
  cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked
fi
# fuzz/ is a workspace of its own; this fails if its lock file is stale.
cargo fetch --locked --manifest-path fuzz/Cargo.toml
if [ "${1:-}" = --setup ]; then
  exit 0
fi

seconds="${FUZZ_SECONDS:-60}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(frame_msgpack frame_json pattern index http_request)
fi
out="${CARGO_TARGET_DIR:-$PWD/target}/fuzz"
flags=(--sanitizer "$sanitizer" --target-dir "$out")

echo "== cargo fuzz build (sanitizer: $sanitizer)"
cargo fuzz build "${flags[@]}"

passed=0
failed=0
for target in "${targets[@]}"; do
  # New inputs go to a scratch corpus (the first folder), kept between runs;
  # the committed seeds are only read.
  corpus="$out/corpus/$target"
  log="$out/logs/$target.log"
  mkdir -p "$corpus" "$(dirname "$log")"
  echo "== cargo fuzz run $target (${seconds}s, log: $log)"
  # -timeout: an input that takes seconds is a bug (a hang), not a slow machine.
  if cargo fuzz run "${flags[@]}" "$target" "$corpus" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 >"$log" 2>&1; then
    grep -E '^#[0-9]+[[:space:]]+DONE' "$log" || tail -n 3 "$log"
    passed=$((passed + 1))
  else
    tail -n 60 "$log"
    echo "!! $target failed: see $log and fuzz/artifacts/$target/"
    failed=$((failed + 1))
  fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
