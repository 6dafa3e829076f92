#!/usr/bin/env bash
# C: builds libpso (cargo, debug profile) and runs the C test suite
# (pso-c/tests/c/test_*.c: orchestrator, workflows, resources, hub, state,
# supervision, intelligence, metrics, NULL/invalid-UTF-8 arguments; against
# include/pso.h) four ways:
#   1. linked with the shared library (libpso.so)
#   2. linked with the static library (libpso.a)
#   3. under valgrind memcheck: no errors, nothing definitely/indirectly lost
#   4. built with gcc -fsanitize=address,undefined (skipped, with a message,
#      when this compiler cannot build and run a sanitized program)
# Honours CARGO_TARGET_DIR. The header freshness check is a cargo test
# (`cargo test -p pso-c --test header`, part of scripts/test-rust.sh), and so
# is the check that every pso_ function is called with NULL and invalid
# UTF-8 arguments (`cargo test -p pso-c --test null_coverage`).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
start=$(date +%s)

if ! command -v valgrind >/dev/null 2>&1; then
  echo "test-c: valgrind is required but not installed (Debian: apt-get install valgrind)" >&2
  exit 1
fi
if ! command -v "${CC:-cc}" >/dev/null 2>&1; then
  echo "test-c: no C compiler found (${CC:-cc}); install gcc" >&2
  exit 1
fi

if [[ -n "${CARGO_TARGET_DIR:-}" ]]; then
  CARGO_TARGET_DIR=$(cd "$root" && mkdir -p "$CARGO_TARGET_DIR" && cd "$CARGO_TARGET_DIR" && pwd)
  export CARGO_TARGET_DIR
fi

echo "== building libpso"
cargo build -p pso-c

make_c() { make --no-print-directory -C pso-c/tests/c NO_CARGO=1 "$@"; }

make_c test
make_c test-static
make_c valgrind

# Can this compiler build and run an ASan+UBSan program here?
probe_dir=$(mktemp -d)
trap 'rm -rf "$probe_dir"' EXIT
printf 'int main(void) { return 0; }\n' > "$probe_dir/probe.c"
if "${CC:-cc}" -fsanitize=address,undefined "$probe_dir/probe.c" -o "$probe_dir/probe" >/dev/null 2>&1 \
   && "$probe_dir/probe" >/dev/null 2>&1; then
  make_c asan
else
  echo "== C tests: ASan+UBSan SKIPPED: ${CC:-cc} cannot build or run -fsanitize=address,undefined here"
fi

echo "== test-c: all C runs passed in $(( $(date +%s) - start ))s"
