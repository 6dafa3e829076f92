'use strict'
// The state store (docs/API.md "State store"): get/put/delete, CAS with
// the conflict's current entry and revision, update, watches (exactly once,
// in order; Compacted), snapshot/restore.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { StateStore, Watcher } = require('..')
const { make, sleep, throwsPso, rejectsPso } = require('./helpers.cjs')

const T = { timeout: 60_000 }

async function until(cond, ms = 10_000) {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await sleep(10)
  }
}

function tmpdir(t) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'pso-node-state-'))
  t.after(() => fs.rmSync(d, { recursive: true, force: true }))
  return d
}

test('get/put/delete with revisions, writers and timestamps', T, (t) => {
  const o = make(t)
  const s = o.state
  assert.ok(s instanceof StateStore)
  assert.equal(s.revision, 0)
  assert.equal(s.get('model.version'), null)
  const before = Date.now()
  const r1 = s.put('model.version', { major: 1, tags: ['a'] }, { writer: 'PAES' })
  assert.equal(r1, 1)
  const e = s.get('model.version')
  assert.equal(e.key, 'model.version')
  assert.deepEqual(e.value, { major: 1, tags: ['a'] })
  assert.equal(e.revision, r1)
  assert.equal(e.writer, 'PAES')
  assert.ok(e.timestamp instanceof Date)
  assert.ok(e.timestamp.getTime() >= before - 1000)
  const r2 = s.put('model.name', 'x')
  assert.ok(r2 > r1)
  assert.equal(s.get('model.name').writer, null)
  assert.deepEqual(s.list('model.').map((x) => x.key), ['model.name', 'model.version'])
  assert.equal(s.list().length, 2)
  assert.equal(s.list('nothing').length, 0)
  const r3 = s.delete('model.name')
  assert.ok(r3 > r2)
  assert.equal(s.delete('model.name'), null)
  assert.equal(s.get('model.name'), null)
  assert.equal(s.revision, r3)
})

test('bad keys and values are PSO_INVALID_ARGUMENT', T, (t) => {
  const o = make(t)
  throwsPso(() => o.state.put('', 1), 'PSO_INVALID_ARGUMENT', /empty/)
  throwsPso(() => o.state.put(7, 1), 'PSO_INVALID_ARGUMENT', /key must be a string/)
  throwsPso(() => o.state.put('k', new Map()), 'PSO_INVALID_ARGUMENT', /Map/)
  throwsPso(() => o.state.put('k', 1, { writr: 'x' }), 'PSO_INVALID_ARGUMENT', /writr/)
  throwsPso(() => o.state.compareAndSet('k', -1, 1), 'PSO_INVALID_ARGUMENT', /expected/)
  throwsPso(() => o.state.update('k', 5), 'PSO_INVALID_ARGUMENT', /function/)
})

test('compareAndSet: new revision, or PSO_CAS_CONFLICT with current and revision', T, (t) => {
  const o = make(t)
  const s = o.state
  const r1 = s.compareAndSet('lock', 0, 'mine')
  const c1 = throwsPso(() => s.compareAndSet('lock', 0, 'theirs'), 'PSO_CAS_CONFLICT')
  assert.equal(c1.revision, r1)
  assert.equal(c1.current.value, 'mine')
  assert.equal(c1.current.revision, r1)
  assert.equal(c1.key, 'lock')
  assert.equal(c1.expected, 0)
  const r2 = s.compareAndSet('lock', r1, 'next', { writer: 'PPO' })
  assert.equal(s.get('lock').writer, 'PPO')
  throwsPso(() => s.compareAndSet('lock', r1, 'stale'), 'PSO_CAS_CONFLICT')
  const absent = throwsPso(() => s.compareAndSet('nothing', 5, 1), 'PSO_CAS_CONFLICT')
  assert.equal(absent.current, null)
  assert.equal(absent.revision, 0)
  throwsPso(() => s.compareAndDelete('lock', r1), 'PSO_CAS_CONFLICT')
  assert.ok(s.compareAndDelete('lock', r2) > r2)
  assert.equal(s.get('lock'), null)
})

test('update retries on conflict and never loses an increment', T, (t) => {
  const o = make(t)
  const s = o.state
  assert.equal(s.update('n', (v) => (v === undefined ? 1 : v + 1)), 1)
  let calls = 0
  s.update('n', (v) => {
    calls++
    // A concurrent writer sneaks in during the first call only.
    if (calls === 1) s.put('n', v + 100)
    return v + 1
  })
  assert.equal(calls, 2)
  assert.equal(s.get('n').value, 102)
  const boom = new Error('no')
  assert.throws(() => s.update('n', () => { throw boom }), (e) => e === boom || e.message === 'no')
  assert.equal(s.get('n').value, 102)
  // Many read-modify-write loops interleaved with other writers.
  for (let i = 0; i < 200; i++) {
    s.update('count', (v) => (v ?? 0) + 1)
    s.put('noise', i)
  }
  assert.equal(s.get('count').value, 200)
})

test('watch: every change after fromRevision, exactly once, in order', T, async (t) => {
  const o = make(t)
  const s = o.state
  s.put('cfg.a', 0)
  const from = s.revision
  const w = s.watch('cfg.', { prefix: true, fromRevision: from })
  t.after(() => w.close())
  assert.ok(w instanceof Watcher)
  const revs = []
  for (let i = 1; i <= 20; i++) revs.push(s.put(`cfg.${i % 3}`, i))
  revs.push(s.delete('cfg.1'))
  s.put('other', 1)
  const got = []
  for await (const e of w) {
    got.push(e)
    if (got.length === revs.length) break
  }
  assert.deepEqual(got.map((e) => e.revision), revs)
  assert.equal(got[0].value, 1)
  const del = got[got.length - 1]
  assert.equal(del.deleted, true)
  assert.equal(del.value, null)
  assert.equal(del.key, 'cfg.1')
  assert.ok(del.timestamp instanceof Date)
  assert.equal(w.closed, true)
})

test('watch from an old revision replays retained history; recv times out when idle', T, async (t) => {
  const o = make(t)
  const s = o.state
  const r1 = s.put('k', 'a')
  const r2 = s.put('k', 'b')
  const w = s.watch('k')
  t.after(() => w.close())
  assert.equal((await w.recv({ timeoutMs: 5000 })).revision, r1)
  assert.equal((await w.recv({ timeoutMs: 5000 })).revision, r2)
  await rejectsPso(w.recv({ timeoutMs: 30 }), 'PSO_TIMEOUT')
  const pending = w.recv()
  const r3 = s.put('k', 'c')
  const e = await pending
  assert.equal(e.revision, r3)
  assert.equal(e.value, 'c')
  w.close()
  await rejectsPso(w.recv(), 'PSO_CLOSED')
  assert.deepEqual(await w.next(), { value: undefined, done: true })
})

test('watch with a callback: each event once, in order, until close()', T, async (t) => {
  const o = make(t)
  const s = o.state
  const got = []
  const w = s.watch('jobs.', { prefix: true, fromRevision: s.revision }, async (e) => {
    await sleep(1)
    got.push([e.revision, e.key, e.value])
  })
  t.after(() => w.close())
  const expected = []
  for (let i = 0; i < 30; i++) expected.push([s.put(`jobs.${i % 4}`, i), `jobs.${i % 4}`, i])
  await until(() => got.length === expected.length)
  assert.deepEqual(got, expected)
  await rejectsPso(w.recv(), 'PSO_INVALID_ARGUMENT', /callback/)
  w.close()
  s.put('jobs.9', 'after close')
  await sleep(50)
  assert.equal(got.length, expected.length)
})

test('a throwing watch callback is counted and reported; delivery goes on', T, async (t) => {
  const o = make(t)
  const s = o.state
  const seen = []
  const errors = []
  const w = s.watch('x', { onError: (err) => errors.push(err.message) }, (e) => {
    seen.push(e.value)
    if (e.value === 1) throw new Error('bad event')
  })
  t.after(() => w.close())
  s.put('x', 1)
  s.put('x', 2)
  await until(() => seen.length === 2 && errors.length === 1)
  assert.deepEqual(errors, ['bad event'])
  assert.equal(w.errors, 1)
})

test('a watch on history no longer retained is PSO_COMPACTED', T, async (t) => {
  const o = make(t)
  const s = o.state
  // More writes to one key than its bounded history keeps.
  for (let i = 0; i < 5000; i++) s.put('hot', i)
  let e
  try {
    const w = s.watch('hot', { fromRevision: 1 })
    t.after(() => w.close())
    e = await w.recv({ timeoutMs: 5000 }).then(() => null, (err) => err)
  } catch (err) {
    e = err
  }
  assert.ok(e, 'a watch from revision 1 after 5000 writes must fail')
  assert.equal(e.code, 'PSO_COMPACTED')
  assert.equal(e.requested, 1)
  assert.ok(e.oldest > 1)
})

test('snapshot and restore; restore ends live watches', T, async (t) => {
  const o = make(t)
  const s = o.state
  const dir = tmpdir(t)
  const file = path.join(dir, 'state.json')
  s.put('a', 1, { writer: 'PDT' })
  s.put('b', { nested: [Buffer.from('hi')] })
  const info = s.snapshot(file)
  assert.equal(info.path, file)
  assert.equal(info.entries, 2)
  assert.equal(info.revision, s.revision)
  assert.ok(info.bytes > 0)
  s.put('a', 2)
  s.delete('b')
  const w = s.watch('a', { fromRevision: s.revision })
  const pending = w.recv()
  const back = s.restore(file)
  assert.equal(back.entries, 2)
  assert.equal(s.get('a').value, 1)
  assert.equal(s.get('a').writer, 'PDT')
  assert.deepEqual(s.get('b').value, { nested: [Buffer.from('hi')] })
  await rejectsPso(pending, 'PSO_CLOSED')
  // Writes after a restore continue above every earlier revision.
  assert.ok(s.put('c', 1) > info.revision)
  throwsPso(() => s.restore(path.join(dir, 'missing.json')), 'PSO_IO')
  fs.writeFileSync(path.join(dir, 'bad.json'), '{ not json')
  throwsPso(() => s.restore(path.join(dir, 'bad.json')), 'PSO_PARSE')
  // A failed snapshot (no such directory) leaves the previous one intact.
  throwsPso(() => s.snapshot(path.join(dir, 'no', 'such', 'dir', 'x.json')), 'PSO_IO')
  assert.equal(s.restore(file).entries, 2)
})

test('after close(), store calls are PSO_CLOSED and watches end', T, async () => {
  const { Orchestrator } = require('..')
  const o = new Orchestrator({ workers: 1 })
  const s = o.state
  s.put('k', 1)
  const w = s.watch('k', { fromRevision: s.revision })
  const step = w.next()
  o.close()
  assert.deepEqual(await step, { value: undefined, done: true })
  throwsPso(() => s.get('k'), 'PSO_CLOSED')
  throwsPso(() => s.put('k', 2), 'PSO_CLOSED')
  throwsPso(() => o.state, 'PSO_CLOSED')
})
