#!/usr/bin/env bash
# Runs every test in every language, installing what it needs itself:
# Rust (fmt, clippy, cargo test), C (plain, static, valgrind), Python (venv +
# maturin + pytest), Node (npm ci + napi build + node --test), a short fuzz
# run when a nightly toolchain is available, and Miri / ThreadSanitizer over
# pso-core's unit tests when that nightly has the miri / rust-src components
# (each skipped with a message otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."

start=$(date +%s)
for part in rust c python node fuzz sanitizers; do
  echo
  echo "=== test-$part ($(( $(date +%s) - start ))s elapsed) ==="
  "scripts/test-$part.sh"
done
echo
echo "=== all tests passed in $(( $(date +%s) - start ))s ==="
