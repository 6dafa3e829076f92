#!/usr/bin/env bash
# Short, bounded fuzz run of every cargo-fuzz target in fuzz/ (own crate, own
# Cargo.lock, excluded from the workspace). Needs a nightly toolchain
# (cargo-fuzz builds with -Zsanitizer=address); without one it prints
# "skipping fuzz" and succeeds. Installs cargo-fuzz 0.13.2 if missing.
#
#   FUZZ_SECONDS   time per target (default 20)
#
# Seeds: pso-core/tests/fuzz/testdata/<target>/ (read-only) plus
# fuzz/corpus/<target>/ (grows, git-ignored); fuzz/<target>.dict if present.
# Targets: topology, workflow, topic (pso-core) and c_api (libpso's C API).
# A crash fails the script; copy
# fuzz/artifacts/<target>/crash-* into pso-core/tests/fuzz/testdata/<target>/
# so `cargo test -p pso-core --test fuzz_regressions` (or, for c_api,
# `cargo test -p pso-c --test fuzz_c_api`) replays it. Results of the long
# runs: fuzz/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "skipping fuzz: no nightly toolchain"
  exit 0
fi

want=0.13.2
if [[ "$(cargo +nightly fuzz --version 2>/dev/null || true)" != *" $want"* ]]; then
  echo "installing cargo-fuzz $want"
  cargo install cargo-fuzz --version "$want" --locked
fi

seconds=${FUZZ_SECONDS:-20}
cd fuzz
targets=$(cargo +nightly fuzz list)
for target in $targets; do
  seeds=../pso-core/tests/fuzz/testdata/$target
  mkdir -p "corpus/$target" "$seeds"
  cargo +nightly fuzz build "$target"
  log=$(mktemp)
  status=0
  dict=()
  [[ -f "$target.dict" ]] && dict=(-dict="$target.dict")
  # No leak checks: each harness keeps its orchestrator or hub across inputs
  # (and at exit) by design, and LSan's per-input scans cost most of the
  # run. Leaks are checked by the C tests under valgrind and ASan.
  ASAN_OPTIONS=detect_leaks=0 cargo +nightly fuzz run "$target" "corpus/$target" "$seeds" -- \
    -max_total_time="$seconds" -detect_leaks=0 -print_final_stats=1 \
    "${dict[@]}" >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 executions in \2 s/p' "$log")
  if [[ $status -ne 0 ]]; then
    tail -n 60 "$log"
    rm -f "$log"
    echo "fuzz $target: FAILED (exit $status); the input is in fuzz/artifacts/$target/"
    exit "$status"
  fi
  rm -f "$log"
  echo "fuzz $target: ${runs:-finished}, corpus $(ls "corpus/$target" | wc -l) inputs"
done
