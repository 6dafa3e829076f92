#!/usr/bin/env bash
# Rust: formatting, lints (warnings are errors), and every workspace test
# (unit, integration, property, doc tests, the C header freshness check).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
