'use strict'
// The committed index.d.ts type-checks real usage under `tsc --strict` (and
// rejects wrong usage: see the @ts-expect-error lines of types/usage.ts).

const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

test('index.d.ts checks types/usage.ts under tsc --strict', { timeout: 60_000 }, () => {
  const tsc = require.resolve('typescript/bin/tsc')
  const project = path.join(__dirname, 'types', 'tsconfig.json')
  const r = spawnSync(process.execPath, [tsc, '-p', project], { encoding: 'utf8', timeout: 50_000 })
  assert.equal(r.signal, null, 'tsc was killed')
  assert.equal(r.status, 0, `tsc failed:\n${r.stdout}${r.stderr}`)
})
