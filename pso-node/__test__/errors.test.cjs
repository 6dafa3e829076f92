'use strict'
// Errors: the code table, every kind the Node API can raise, and that bad
// input changes nothing.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { Orchestrator, errorCodes } = require('..')
const { make, throwsPso, rejectsPso } = require('./helpers.cjs')

const T = { timeout: 10_000 }

// The table of docs/API.md ("Errors"), in code order: every kind pso-core
// defines, with its C status number. errorCodes() must list exactly these.
const TABLE = [
  ['NULL_POINTER', 1], ['INVALID_UTF8', 2], ['STALE_HANDLE', 3], ['INTERNAL', 4],
  ['NOT_FOUND', 10], ['ALREADY_EXISTS', 11], ['CYCLE', 12], ['INVALID_ARGUMENT', 13],
  ['PARSE', 14], ['CONFLICT', 15], ['HANDLER_FAILED', 16], ['TIMEOUT', 17],
  ['BUSY', 18], ['CLOSED', 19], ['IO', 20], ['NOT_ACTIVE', 21],
  ['NO_RESPONDERS', 22], ['OVERFLOW', 23], ['CAS_CONFLICT', 24], ['COMPACTED', 25],
  ['EXCEEDS_CAPACITY', 30], ['EXCEEDS_QUOTA', 31], ['CANCELLED', 32],
]

test('errorCodes() is the documented table: every kind, one distinct PSO_ code each', T, () => {
  const table = errorCodes()
  assert.deepEqual(
    table.map((r) => [r.kind, r.status]),
    TABLE,
  )
  assert.deepEqual(
    table.map((r) => r.code),
    TABLE.map(([kind]) => `PSO_${kind}`),
  )
  assert.equal(new Set(table.map((r) => r.code)).size, table.length)
  assert.equal(new Set(table.map((r) => r.status)).size, table.length)
})

/** A snapshot that changes if anything was registered or connected. */
const snapshot = (o) => ({ size: o.size, json: o.export('json') })

test('registry errors: not found, duplicate, cycle with path; nothing changes', T, (t) => {
  const o = make(t)
  o.register({ name: 'a' })
  o.register({ name: 'b', requires: ['a'] })
  const before = snapshot(o)

  const nf = throwsPso(() => o.register({ name: 'c', requires: ['ghost'] }), 'PSO_NOT_FOUND', /ghost/)
  assert.equal(nf.message, "unknown system 'ghost' (in 'c requires ghost')")
  throwsPso(() => o.register({ name: 'a' }), 'PSO_ALREADY_EXISTS', /'a' is already registered/)
  throwsPso(() => o.connect('a', 'requires', 'nope'), 'PSO_NOT_FOUND')
  throwsPso(() => o.status('nope'), 'PSO_NOT_FOUND')
  throwsPso(() => o.whyInactive('nope'), 'PSO_NOT_FOUND')
  throwsPso(() => o.plan('nope'), 'PSO_NOT_FOUND')
  throwsPso(() => o.setHandlers('nope', {}), 'PSO_NOT_FOUND')

  const cycle = throwsPso(() => o.connect('a', 'after', 'b'), 'PSO_CYCLE', /ordering cycle/)
  assert.deepEqual(cycle.path, ['a', 'b', 'a'])
  assert.deepEqual(snapshot(o), before)
})

test('registerMany is all or nothing', T, (t) => {
  const o = make(t)
  o.register({ name: 'base' })
  const before = snapshot(o)

  const cycle = throwsPso(
    () => o.registerMany(
      [{ name: 'x', requires: ['y'] }, { name: 'y' }, { name: 'z' }],
      [{ from: 'y', kind: 'wants', to: 'z' }, { from: 'z', kind: 'after', to: 'x' }],
    ),
    'PSO_CYCLE',
  )
  assert.equal(cycle.path[0], cycle.path[cycle.path.length - 1])
  assert.deepEqual([...cycle.path].sort(), ['x', 'x', 'y', 'z'])
  throwsPso(() => o.registerMany([{ name: 'n1' }, { name: 'base' }]), 'PSO_ALREADY_EXISTS')
  throwsPso(() => o.registerMany([{ name: 'n1' }, { name: 'n1' }]), 'PSO_ALREADY_EXISTS')
  throwsPso(
    () => o.registerMany([{ name: 'n1' }], [{ from: 'n1', kind: 'needs', to: 'base' }]),
    'PSO_INVALID_ARGUMENT',
    /unknown edge kind 'needs'/,
  )
  throwsPso(() => o.registerMany([{ name: 'n1' }, 7]), 'PSO_INVALID_ARGUMENT', /systems\[1\] must be an object, got number/)
  assert.deepEqual(snapshot(o), before)

  assert.equal(o.registerMany([{ name: 'n1' }, { name: 'n2' }], [{ from: 'n2', kind: 'requires', to: 'n1' }]), 2)
  assert.deepEqual(o.status('n2').requires, ['n1'])
})

test('bad strings name the bad value: edge kind, priority, formats, names', T, (t) => {
  const o = make(t)
  o.register({ name: 'a' })
  o.register({ name: 'b' })
  const before = snapshot(o)
  throwsPso(() => o.connect('a', 'require', 'b'), 'PSO_INVALID_ARGUMENT', /unknown edge kind 'require'/)
  throwsPso(() => o.register({ name: 'c', priority: 'urgent' }), 'PSO_INVALID_ARGUMENT', /unknown priority 'urgent'/)
  throwsPso(() => o.export('yaml'), 'PSO_INVALID_ARGUMENT', /unknown export format 'yaml'/)
  throwsPso(() => o.loadTopologyString('', 'yaml'), 'PSO_INVALID_ARGUMENT', /unknown topology format 'yaml'/)
  throwsPso(() => o.register({ name: 'has space' }), 'PSO_INVALID_ARGUMENT', /has space/)
  throwsPso(() => o.register({ name: '' }), 'PSO_INVALID_ARGUMENT', /empty/)
  assert.deepEqual(throwsPso(() => o.connect('a', 'requires', 'a'), 'PSO_CYCLE').path, ['a', 'a'])
  assert.deepEqual(snapshot(o), before)
})

test('wrong JS types are PSO_INVALID_ARGUMENT errors that say what was wrong', T, async (t) => {
  const o = make(t)
  o.register({ name: 'a' })
  const before = snapshot(o)
  const cases = [
    [() => o.register(5), /spec must be an object, got number/],
    [() => o.register(), /spec must be an object, got undefined/],
    [() => o.register([]), /spec must be an object, got array/],
    [() => o.register({ name: 5 }), /spec\.name must be a string, got number/],
    [() => o.register({ name: 'c', requries: ['a'] }), /unknown key 'requries' in system spec 'c'/],
    [() => o.register({ name: 'c', requires: 'a' }), /requires of system spec 'c' must be an array, got string/],
    [() => o.register({ name: 'c', tags: [1] }), /tags of system spec 'c'\[0\] must be a string, got number/],
    [() => o.register({ name: 'c', tier: 3 }), /tier of system spec 'c' must be a string/],
    [() => o.register({ name: 'c', onActivate: 'go' }), /onActivate of system spec 'c' must be a function, got string/],
    [() => o.register({ name: 'c', timeoutMs: -1 }), /timeoutMs of system spec 'c' must be a positive number of milliseconds, got -1/],
    [() => o.register({ name: 'c', timeoutMs: 'soon' }), /must be a number, got string/],
    [() => o.register({ name: 'c', timeoutMs: 1e300 }), /timeoutMs of system spec 'c' is too large/],
    [() => o.register({ name: 'c', timeoutMs: Infinity }), /timeoutMs of system spec 'c' must be finite/],
    [() => o.register({ name: 'c', resources: { cpu: 1.5 } }), /resources\.cpu of system spec 'c' must be a non-negative integer, got 1\.5/],
    [() => o.register({ name: 'c', resources: { cpu: -1 } }), /non-negative integer, got -1/],
    [() => o.register({ name: 'c', resources: [] }), /resources of system spec 'c' must be an object, got array/],
    [() => o.registerMany({ name: 'c' }), /systems must be an array, got object/],
    [() => o.registerMany([], [['a', 'requires', 'b']]), /edges\[0\] must be an object, got array/],
    [() => o.registerMany([], [{ from: 'a', kind: 'requires', to: 'b', why: 1 }]), /unknown key 'why' in edges\[0\]/],
    [() => o.connect('a', 1, 'b'), /kind must be a string, got number/],
    [() => o.setHandlers('a', { onStart() {} }), /unknown key 'onStart'/],
    [() => o.setHandlers('a', 5), /handlers must be an object, got number/],
    [() => o.status(null), /name must be a string, got null/],
    [() => o.loadTopologyString(Buffer.from('x')), /text must be a string, got object/],
    [() => o.export(1), /format must be a string, undefined or null, got number/],
  ]
  for (const [fn, message] of cases) throwsPso(fn, 'PSO_INVALID_ARGUMENT', message)
  await rejectsPso(o.activateSystem(42), 'PSO_INVALID_ARGUMENT', /name must be a string, got number/)
  await rejectsPso(o.deactivateSystem({}), 'PSO_INVALID_ARGUMENT', /name must be a string, got object/)
  assert.deepEqual(snapshot(o), before)
})

test('constructor options are checked', T, (t) => {
  throwsPso(() => new Orchestrator({ workers: 0 }), 'PSO_INVALID_ARGUMENT', /workers must be at least 1/)
  throwsPso(() => new Orchestrator({ workers: -2 }), 'PSO_INVALID_ARGUMENT', /options\.workers must be a non-negative integer/)
  throwsPso(() => new Orchestrator({ workers: 1.5 }), 'PSO_INVALID_ARGUMENT')
  throwsPso(() => new Orchestrator({ wrkers: 2 }), 'PSO_INVALID_ARGUMENT', /unknown key 'wrkers'/)
  throwsPso(() => new Orchestrator({ transitionTimeoutMs: 0 }), 'PSO_INVALID_ARGUMENT', /transitionTimeoutMs/)
  throwsPso(() => new Orchestrator(5), 'PSO_INVALID_ARGUMENT', /options must be an object/)
  const o = make(t, { workers: 3, transitionTimeoutMs: 1000 })
  assert.equal(o.workers, 3)
  assert.equal(o.size, 0)
  const d = make(t, {})
  assert.ok(d.workers >= 1)
})

test('parse errors carry line, column and source', T, (t) => {
  const o = make(t)
  const toml = throwsPso(
    () => o.loadTopologyString('[[systems]]\nname = "a"\nrequries = ["b"]\n'),
    'PSO_PARSE',
    /^<string>:3:1: .*requries/,
  )
  assert.deepEqual([toml.line, toml.column, toml.source], [3, 1, '<string>'])

  const json = throwsPso(
    () => o.loadTopologyString('{\n  "systems": [\n    {"name": "a",}\n  ]\n}', 'json'),
    'PSO_PARSE',
  )
  assert.equal(json.line, 3)
  assert.equal(json.source, '<string>')

  // A registry problem in a file: its kind, with the position of the name.
  const unknown = throwsPso(
    () => o.loadTopologyString('[[systems]]\nname = "a"\nrequires = ["ghost"]\n'),
    'PSO_NOT_FOUND',
    /ghost/,
  )
  assert.deepEqual([unknown.line, unknown.column], [3, 14])

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pso-node-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'bad.toml')
  fs.writeFileSync(file, '[[systems]]\nname = 5\n')
  const fromFile = throwsPso(() => o.loadTopology(file), 'PSO_PARSE')
  assert.deepEqual([fromFile.line, fromFile.source], [2, file])
  throwsPso(() => o.loadTopology(path.join(dir, 'missing.toml')), 'PSO_IO', /missing\.toml/)
  throwsPso(() => o.loadTopology(path.join(dir, 'topology.yaml')), 'PSO_INVALID_ARGUMENT', /\.toml or \.json/)
  assert.equal(o.size, 0)
})

test('conflicts carry system and other', T, async (t) => {
  const o = make(t)
  o.register({ name: 'blue' })
  o.register({ name: 'green', conflicts: ['blue'] })
  await o.activateSystem('blue')
  const e = await rejectsPso(o.activateSystem('green'), 'PSO_CONFLICT', /green.*blue.*is Active/)
  assert.deepEqual([e.system, e.other], ['green', 'blue'])
  const p = throwsPso(() => o.plan('green'), 'PSO_CONFLICT')
  assert.deepEqual([p.system, p.other], ['green', 'blue'])
  assert.equal(o.status('green').state, 'Registered')
  await rejectsPso(o.activateAll(), 'PSO_CONFLICT')
})

test('after close() every call fails with PSO_CLOSED', T, async (t) => {
  const o = make(t, { workers: 1 })
  o.register({ name: 'a' })
  o.close()
  o.close() // idempotent
  assert.equal(o.size, 1) // plain facts stay readable
  for (const fn of [
    () => o.register({ name: 'b' }),
    () => o.registerMany([]),
    () => o.connect('a', 'wants', 'a'),
    () => o.setHandlers('a', {}),
    () => o.loadTopologyString(''),
    () => o.loadTopology('x.toml'),
    () => o.systemStatus(),
    () => o.status('a'),
    () => o.whyInactive('a'),
    () => o.plan('a'),
    () => o.export(),
  ]) {
    throwsPso(fn, 'PSO_CLOSED', /the orchestrator is closed/)
  }
  await rejectsPso(o.activateSystem('a'), 'PSO_CLOSED')
  await rejectsPso(o.activateAll(), 'PSO_CLOSED')
  await rejectsPso(o.deactivateSystem('a'), 'PSO_CLOSED')
  await rejectsPso(o.deactivateAll(), 'PSO_CLOSED')
})

test('Symbol.dispose closes', T, (t) => {
  const o = make(t, { workers: 1 })
  assert.equal(typeof o[Symbol.dispose], 'function')
  o[Symbol.dispose]()
  throwsPso(() => o.systemStatus(), 'PSO_CLOSED')
})
