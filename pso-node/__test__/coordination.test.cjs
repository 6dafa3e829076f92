'use strict'
// Coordination modes (docs/API.md "Coordination"): coordinationStatus,
// automatic promotion, minimalist mode (runMinimal, idle timeout, pinning),
// lifecycle events on the hub, and the orchestrator's hub options.

const test = require('node:test')
const assert = require('node:assert/strict')
const { make, sleep, throwsPso, rejectsPso } = require('./helpers.cjs')

const T = { timeout: 60_000 }

async function until(cond, ms = 15_000) {
  const end = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await sleep(10)
  }
}

test('coordinationStatus starts hierarchical with no pairs', T, (t) => {
  const o = make(t)
  const st = o.coordinationStatus()
  assert.equal(st.mode, 'hierarchical')
  assert.equal(st.minimalist, null)
  assert.equal(st.autoPromoteEveryMs, null)
  assert.deepEqual(st.directPairs, [])
  assert.deepEqual(st.meshes, [])
  assert.deepEqual(st.edges, [])
  assert.equal(typeof st.subscriptions, 'number')
})

test('edge rates come from publishes that name a sender to an owned subscription', T, async (t) => {
  const o = make(t)
  const sub = o.hub.subscribe('ppo.in', { owner: 'PPO' })
  t.after(() => sub.unsubscribe())
  for (let i = 0; i < 20; i++) await o.hub.publish('ppo.in', i, { sender: 'PAES' })
  const edge = o.coordinationStatus().edges.find((e) => e.from === 'PAES' && e.to === 'PPO')
  assert.ok(edge, 'the edge PAES -> PPO is measured')
  assert.equal(edge.routed, 20)
  assert.equal(edge.direct, 0)
  assert.equal(edge.mode, 'hierarchical')
  assert.ok(edge.rate >= 0)
})

test('automatic promotion gives a hot pair a direct channel, with its reason', T, async (t) => {
  const o = make(t, {
    workers: 2,
    autoPromoteMs: 20,
    hub: { promoteThreshold: 1, demoteThreshold: 0, rateWindowMs: 50 },
  })
  assert.equal(o.coordinationStatus().autoPromoteEveryMs, 20)
  const sub = o.hub.subscribe('b.in', { owner: 'B', overflow: 'dropOldest', capacity: 16 })
  t.after(() => sub.unsubscribe())
  await until(async () => {
    for (let i = 0; i < 50; i++) await o.hub.publish('b.in', i, { sender: 'A' })
    return o.coordinationStatus().directPairs.some((p) => p.origin === 'promoted')
  })
  const st = o.coordinationStatus()
  assert.equal(st.mode, 'direct')
  const pair = st.directPairs.find((p) => p.origin === 'promoted')
  assert.deepEqual([pair.a, pair.b], ['A', 'B'])
  assert.ok(pair.reason.length > 0)
  assert.ok(st.changes.some((c) => c.to === 'direct' && c.a === 'A' && c.b === 'B'))
  o.setAutoPromote(null)
  assert.equal(o.coordinationStatus().autoPromoteEveryMs, null)
})

test('promotePairs applies the candidates now', T, async (t) => {
  const o = make(t, { workers: 2, hub: { promoteThreshold: 1, demoteThreshold: 0, rateWindowMs: 20 } })
  const sub = o.hub.subscribe('y.in', { owner: 'Y', overflow: 'dropOldest', capacity: 4 })
  t.after(() => sub.unsubscribe())
  assert.equal(o.promotePairs(), 0)
  let changed = 0
  await until(async () => {
    for (let i = 0; i < 50; i++) await o.hub.publish('y.in', i, { sender: 'X' })
    await sleep(25)
    changed += o.promotePairs()
    return changed > 0
  })
  assert.equal(changed, 1)
  assert.equal(o.coordinationStatus().directPairs[0].origin, 'promoted')
})

test('lifecycle transitions are published on pso.lifecycle.<system>.<event>', T, async (t) => {
  const o = make(t)
  const events = o.hub.subscribe('pso.lifecycle.>')
  t.after(() => events.unsubscribe())
  o.register({ name: 'db', onActivate: () => {} })
  o.register({ name: 'api', requires: ['db'], onActivate: () => { throw new Error('no port') } })
  await rejectsPso(o.activateSystem('api'), 'PSO_HANDLER_FAILED')
  const first = await events.recv({ timeoutMs: 5000 })
  assert.equal(first.topic, 'pso.lifecycle.db.activated')
  assert.equal(first.payload.system, 'db')
  assert.equal(first.payload.event, 'activated')
  const second = await events.recv({ timeoutMs: 5000 })
  assert.equal(second.topic, 'pso.lifecycle.api.failed')
  assert.match(second.payload.error, /no port/)
})

test('deactivating a system closes its direct channels', T, async (t) => {
  const o = make(t)
  o.register({ name: 'a' })
  o.register({ name: 'b' })
  await o.activateAll()
  o.hub.openDirect('a', 'b', 'declared')
  const end = o.hub.endpoint('b', 'a')
  const pending = end.recv().then(() => null, (e) => e)
  await o.deactivateSystem('a')
  const e = await pending
  assert.equal(e?.code, 'PSO_CLOSED')
  assert.equal(o.coordinationStatus().directPairs.length, 0)
})

function minimalWorld(o, log) {
  const sys = (name, extra = {}) => ({
    name,
    onActivate: async () => { await sleep(1); log.push(`+${name}`) },
    onDeactivate: () => { log.push(`-${name}`) },
    ...extra,
  })
  o.register(sys('store'))
  o.register(sys('index', { requires: ['store'], operations: { count: () => 3 } }))
  o.register(sys('unrelated'))
  o.register(sys('cache', { pinned: true, operations: { get: () => 'hit' } }))
  return o.workflow('task', [
    { name: 'n', system: 'index', op: 'count' },
    { name: 'c', system: 'cache', op: 'get' },
  ])
}

test('runMinimal activates only the closure of the systems a workflow uses', T, async (t) => {
  const o = make(t)
  const log = []
  const wf = minimalWorld(o, log)
  const run = await o.runMinimal(wf)
  const r = await run.result
  assert.equal(r.state, 'succeeded')
  assert.equal(o.status('unrelated').state, 'Registered')
  for (const s of ['store', 'index', 'cache']) assert.equal(o.status(s).state, 'Active')
  assert.ok(log.indexOf('+store') < log.indexOf('+index'))
  assert.ok(!log.includes('+unrelated'))
  // Already active: nothing is activated again.
  log.length = 0
  await (await o.runMinimal(wf)).result
  assert.deepEqual(log, [])
})

test('runMinimal: a failing activation rejects naming the system; nothing runs', T, async (t) => {
  const o = make(t)
  let ran = false
  o.register({ name: 'broken', onActivate: () => { throw new Error('cannot start') }, operations: { go: () => { ran = true } } })
  const wf = o.workflow('w', [{ name: 's', system: 'broken', op: 'go' }])
  const e = await rejectsPso(o.runMinimal(wf), 'PSO_HANDLER_FAILED', /cannot start/)
  assert.equal(e.target, 'broken')
  assert.equal(ran, false)
  await rejectsPso(o.runMinimal({ not: 'a workflow' }), 'PSO_INVALID_ARGUMENT')
})

test('idle timeout deactivates idle systems that are not pinned', T, async (t) => {
  const o = make(t, { workers: 2, idleTimeoutMs: 100 })
  const log = []
  const wf = minimalWorld(o, log)
  o.pinSystem('store')
  await (await o.runMinimal(wf)).result
  const st = o.coordinationStatus()
  assert.equal(st.mode, 'minimalist')
  assert.equal(st.minimalist.idleTimeoutMs, 100)
  assert.deepEqual(st.minimalist.pinned.sort(), ['cache', 'store'])
  // The sweep records a deactivation after it happened: wait for the record.
  const record = () => o.coordinationStatus().minimalist.deactivated.find((x) => x.system === 'index')
  await until(() => record() !== undefined)
  assert.equal(o.status('index').state, 'Inactive')
  assert.equal(o.status('store').state, 'Active')
  assert.equal(o.status('cache').state, 'Active')
  assert.ok(record().idleMs >= 100)
  assert.ok(record().at instanceof Date)
  assert.ok(log.includes('-index'))
  assert.ok(!log.includes('-store'))
})

test('deactivateIdle sweeps now; pinSystem(name, false) unpins', T, async (t) => {
  const o = make(t)
  const log = []
  minimalWorld(o, log)
  await o.activateSystem('cache')
  await o.activateSystem('unrelated')
  assert.deepEqual(await o.deactivateIdle(), [], 'minimalist mode is off')
  o.setIdleTimeout(60_000)
  o.pinSystem('unrelated')
  assert.deepEqual(await o.deactivateIdle(), [], 'nothing idle for a minute yet')
  o.setIdleTimeout(1)
  await sleep(20)
  assert.deepEqual(await o.deactivateIdle(), [])
  o.pinSystem('cache', false)
  o.pinSystem('unrelated', false)
  await sleep(5)
  const gone = await o.deactivateIdle()
  // The timer's sweep may have taken some of them first.
  for (const s of gone) assert.ok(['cache', 'unrelated'].includes(s))
  await until(() => o.status('cache').state === 'Inactive' && o.status('unrelated').state === 'Inactive')
  o.setIdleTimeout(null)
  assert.equal(o.coordinationStatus().minimalist, null)
  throwsPso(() => o.pinSystem('ghost'), 'PSO_NOT_FOUND')
})

test('bad coordination options and arguments are PSO_INVALID_ARGUMENT', T, () => {
  const { Orchestrator } = require('..')
  throwsPso(() => new Orchestrator({ hub: { queueCapacity: 0 } }), 'PSO_INVALID_ARGUMENT', /queueCapacity/)
  throwsPso(() => new Orchestrator({ hub: { overflow: 'maybe' } }), 'PSO_INVALID_ARGUMENT', /overflow/)
  throwsPso(() => new Orchestrator({ hub: { promoteTreshold: 1 } }), 'PSO_INVALID_ARGUMENT', /promoteTreshold/)
  throwsPso(() => new Orchestrator({ idleTimeoutMs: -1 }), 'PSO_INVALID_ARGUMENT', /idleTimeoutMs/)
  throwsPso(() => new Orchestrator({ autoPromoteMs: 'often' }), 'PSO_INVALID_ARGUMENT', /autoPromoteMs/)
  const o = new Orchestrator({ workers: 1, hub: { queueCapacity: 8, overflow: 'dropNewest' } })
  try {
    const sub = o.hub.subscribe('x')
    assert.equal(sub.status().capacity, 8)
    assert.equal(sub.status().overflow, 'dropNewest')
    throwsPso(() => o.setIdleTimeout(0), 'PSO_INVALID_ARGUMENT')
    throwsPso(() => o.setAutoPromote('x'), 'PSO_INVALID_ARGUMENT')
    throwsPso(() => o.register({ name: 'p', pinned: 'yes' }), 'PSO_INVALID_ARGUMENT', /pinned/)
  } finally {
    o.close()
  }
})
