#!/usr/bin/env bash
# loom model checks of pso-core's own synchronization protocols: worker
# park/unpark (scheduler/loom_sleep.rs), the dependency-counter hand-off
# (workflow/loom_deps.rs), step claim/complete vs cancel, deadline and retry
# (workflow/loom_steps.rs) and the lease hand-off to a waiter
# (allocator/loom_lease.rs). Built with `--cfg loom`, which swaps loom's
# atomics, locks and threads in through pso-core/src/sync.rs. The lib's other
# unit tests are filtered out: under `--cfg loom` they would run outside a
# loom model. LOOM_MAX_PREEMPTIONS bounds the search (default 3). About 3.5 min
# on a loaded 2-core machine (build ~1.5 min incremental, models ~100 s), so
# test-all.sh does not run it.
set -euo pipefail
cd "$(dirname "$0")/.."
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
# A separate target directory: the cfg change would otherwise rebuild the
# normal one from scratch on every switch.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/loom}"
RUSTFLAGS="--cfg loom ${RUSTFLAGS:-}" cargo test -p pso-core --release --locked --lib loom_
