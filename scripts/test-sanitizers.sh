#!/usr/bin/env bash
# Miri and ThreadSanitizer over pso-core's unit tests (`--lib`), each only
# when the nightly toolchain has the component it needs; otherwise it prints
# "skipping <tool>: ..." and succeeds, like test-fuzz.sh without a nightly.
#
#   miri  needs the `miri` component:      rustup component add --toolchain nightly miri
#   tsan  needs the `rust-src` component:  rustup component add --toolchain nightly rust-src
#         (the standard library is rebuilt with -Zsanitizer=thread through
#         -Zbuild-std, so that its atomics and locks are instrumented too)
#
# Stress tests scale down under Miri (`cfg!(miri)`, STYLE.md rule 13); tests
# Miri cannot run (threads parked on real time, FFI) are for those tests to
# mark `#[cfg_attr(miri, ignore)]`. Each tool builds into its own target
# directory (target/miri, target/tsan) so it never invalidates the normal one.
#
#   SANITIZERS   which to run (default "miri tsan")
#   MIRIFLAGS    passed through (default -Zmiri-disable-isolation, for clocks)
set -euo pipefail
cd "$(dirname "$0")/.."

start=$(date +%s)
step() { echo "--- $1 ($(( $(date +%s) - start ))s)"; }

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "skipping miri: no nightly toolchain"
  echo "skipping tsan: no nightly toolchain"
  exit 0
fi

host=$(rustc +nightly -vV | sed -n 's/^host: //p')
sysroot=$(rustc +nightly --print sysroot)

for tool in ${SANITIZERS:-miri tsan}; do
  case "$tool" in
    miri)
      if ! cargo +nightly miri --version >/dev/null 2>&1; then
        echo "skipping miri: component not installed (rustup component add --toolchain nightly miri)"
        continue
      fi
      step "miri: cargo +nightly miri test -p pso-core --lib"
      CARGO_TARGET_DIR=target/miri \
        MIRIFLAGS="${MIRIFLAGS:--Zmiri-disable-isolation}" \
        cargo +nightly miri test -p pso-core --lib
      ;;
    tsan)
      if [[ ! -d "$sysroot/lib/rustlib/src/rust/library" ]]; then
        echo "skipping tsan: component rust-src not installed (needed for -Zbuild-std; rustup component add --toolchain nightly rust-src)"
        continue
      fi
      step "tsan: cargo +nightly test -Zbuild-std -p pso-core --lib (-Zsanitizer=thread)"
      CARGO_TARGET_DIR=target/tsan \
        RUSTFLAGS="-Zsanitizer=thread ${RUSTFLAGS:-}" \
        RUSTDOCFLAGS="-Zsanitizer=thread" \
        TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1}" \
        cargo +nightly test -Zbuild-std --target "$host" -p pso-core --lib
      ;;
    *)
      echo "test-sanitizers: unknown tool '$tool' (expected miri or tsan)" >&2
      exit 2
      ;;
  esac
done
step "sanitizers: done"
