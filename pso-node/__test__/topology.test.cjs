'use strict'
// Topology loading and export round trips.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { make } = require('./helpers.cjs')

const T = { timeout: 10_000 }

const TOML = `
[[systems]]
name = "PDT"
tier = "foundation"
priority = "high"
tags = ["debugging"]
resources = { cpu = 300, memory = 256 }

[[systems]]
name = "PSec"
tier = "enterprise"
priority = "critical"
requires = ["PDT"]
interacts = ["PBOS"]
timeout_ms = 5000

[[systems]]
name = "PBOS"
requires = ["PSec"]
wants = ["PDT"]

[[systems]]
name = "Legacy"
conflicts = ["PBOS"]

[[edges]]
from = "Legacy"
kind = "after"
to = "PDT"
`

test('loadTopologyString (TOML) declares the whole model', T, (t) => {
  const o = make(t)
  assert.equal(o.loadTopologyString(TOML), 4)
  assert.equal(o.size, 4)
  const psec = o.status('PSec')
  assert.equal(psec.tier, 'enterprise')
  assert.equal(psec.priority, 'critical')
  assert.deepEqual(psec.requires, ['PDT'])
  assert.deepEqual(psec.interacts, ['PBOS'])
  assert.deepEqual(psec.requiredBy, ['PBOS'])
  const pdt = o.status('PDT')
  assert.deepEqual(pdt.resources, { cpu: 300, memory: 256 })
  assert.deepEqual(pdt.tags, ['debugging'])
  assert.equal(pdt.tier, 'foundation')
  assert.deepEqual(o.status('Legacy').after, ['PDT'])
  assert.deepEqual(o.status('Legacy').conflicts, ['PBOS'])
  assert.equal(o.status('PBOS').tier, null)
  assert.deepEqual(o.plan('PBOS').levels, [['PDT'], ['PSec'], ['PBOS']])
})

test('register() and export() agree field by field', T, (t) => {
  const o = make(t)
  o.register({ name: 'db', tier: 'data', tags: ['sql', 'primary'], priority: 'high', resources: { cpu: 500, memory: 1024 } })
  o.register({ name: 'api', requires: ['db'], timeoutMs: 2500, onActivate() {} })
  o.register({ name: 'ui', wants: ['api'], after: ['db'], interacts: ['api'], priority: 'low' })
  const exported = JSON.parse(o.export())
  assert.deepEqual(exported.systems, [
    { name: 'db', tier: 'data', tags: ['sql', 'primary'], priority: 'high', resources: { cpu: 500, memory: 1024 } },
    { name: 'api', requires: ['db'], timeout_ms: 2500 },
    { name: 'ui', priority: 'low', wants: ['api'], after: ['db'], interacts: ['api'] },
  ])
})

for (const format of ['json', 'toml']) {
  test(`export('${format}') loads back into an identical registry`, T, (t) => {
    const a = make(t)
    a.loadTopologyString(TOML)
    a.connect('PBOS', 'interacts', 'PDT')
    const text = a.export(format)
    const b = make(t)
    assert.equal(b.loadTopologyString(text, format), 4)
    assert.equal(b.export(format), text)
    assert.equal(b.export('json'), a.export('json'))
    assert.deepEqual(
      b.systemStatus().map((s) => [s.name, s.requires, s.wants, s.after, s.conflicts, s.interacts, s.priority]),
      a.systemStatus().map((s) => [s.name, s.requires, s.wants, s.after, s.conflicts, s.interacts, s.priority]),
    )
  })
}

test('diagram exports name every system', T, (t) => {
  const o = make(t)
  o.loadTopologyString(TOML)
  const dot = o.export('dot')
  const mermaid = o.export('mermaid')
  assert.match(dot, /^digraph pso \{/)
  assert.match(mermaid, /^flowchart LR/)
  for (const name of ['PDT', 'PSec', 'PBOS', 'Legacy']) {
    assert.ok(dot.includes(name), `dot mentions ${name}`)
    assert.ok(mermaid.includes(name), `mermaid mentions ${name}`)
  }
})

test('loadTopology reads .toml and .json files', T, (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pso-node-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const toml = path.join(dir, 'engine.toml')
  fs.writeFileSync(toml, TOML)
  const o = make(t)
  assert.equal(o.loadTopology(toml), 4)
  const json = path.join(dir, 'engine.json')
  fs.writeFileSync(json, o.export('json'))
  const p = make(t)
  assert.equal(p.loadTopology(json), 4)
  assert.equal(p.export(), o.export())
})

test('a loaded topology activates with handlers set afterwards', T, async (t) => {
  const o = make(t)
  o.loadTopologyString(TOML)
  const order = []
  for (const s of o.systemStatus()) o.setHandlers(s.name, { onActivate: (n) => { order.push(n) } })
  const r = await o.activateSystem('PBOS')
  assert.deepEqual(order, ['PDT', 'PSec', 'PBOS'])
  assert.deepEqual(r.activated, order)
})
