#!/usr/bin/env bash
# Node: installs the pinned tools (`npm ci`: @napi-rs/cli, typescript), builds
# the addon the way users do (`npm run build` = napi build --platform
# --release), fails if that build changed the committed generated files
# (index.js, index.d.ts), then runs the `node --test` suite (which also
# type-checks index.d.ts with tsc --strict) under a global timeout so that a
# deadlock or a leaked handle cannot hang CI. Needs only node, npm and cargo.
set -euo pipefail
cd "$(dirname "$0")/../pso-node"

start=$(date +%s)
step() { echo "--- $1 ($(( $(date +%s) - start ))s)"; }

step "npm ci"
npm ci --no-audit --no-fund

# Compare against the committed files when this is a git checkout; otherwise
# against the files as they were before the build.
snapshot=$(mktemp -d)
trap 'rm -rf "$snapshot"' EXIT
cp index.js index.d.ts "$snapshot/"

step "napi build --platform --release"
npm run --silent build

step "generated files are fresh"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  if [ -n "$(git status --porcelain -- index.js index.d.ts)" ]; then
    git --no-pager diff -- index.js index.d.ts | head -50
    echo "pso-node: index.js / index.d.ts differ from the committed ones; commit the regenerated files" >&2
    exit 1
  fi
fi
for f in index.js index.d.ts; do
  if ! cmp -s "$f" "$snapshot/$f"; then
    diff -u "$snapshot/$f" "$f" | head -50
    echo "pso-node: a fresh build changed $f; commit the regenerated file" >&2
    exit 1
  fi
done

step "node --test"
timeout --kill-after=10 300 node --test __test__/

step "node: done"
