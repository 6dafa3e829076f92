#!/usr/bin/env bash
# Python: builds and installs the `pso` package the way users do
# (`pip install ./pso-py`, a release build through maturin), checks the
# hand-written stubs against the module (mypy stubtest) and typed use of them
# (mypy --strict), then runs the pytest suite under a global timeout so that a
# deadlock cannot hang CI. Needs only python3 (with venv), pip and cargo.
set -euo pipefail
cd "$(dirname "$0")/.."

MATURIN_VERSION=1.16.0
PYTEST_VERSION=9.2.0
MYPY_VERSION=2.4.1

start=$(date +%s)
step() { echo "--- $1 ($(( $(date +%s) - start ))s)"; }

if [ ! -x .venv/bin/python ]; then
  step "creating .venv"
  python3 -m venv .venv
fi
py=.venv/bin/python

step "installing tools (maturin $MATURIN_VERSION, pytest $PYTEST_VERSION, mypy $MYPY_VERSION)"
"$py" -m pip install --quiet --disable-pip-version-check \
  "maturin==$MATURIN_VERSION" "pytest==$PYTEST_VERSION" "mypy==$MYPY_VERSION"

step "pip install ./pso-py"
"$py" -m pip install --quiet --disable-pip-version-check ./pso-py

# Type checks run from pso-py/tests so that `import pso` can only mean the
# installed package (never the source tree).
step "stubs: mypy stubtest + mypy --strict"
(cd pso-py/tests && ../../"$py" -m mypy.stubtest pso && ../../"$py" -m mypy --strict .)

step "pytest"
timeout --kill-after=10 600 "$py" -m pytest pso-py/tests -q

step "python: done"
