'use strict'
// Resources (docs/API.md, "Resources"): leases and every way they go, waiting
// without blocking the event loop, timeouts that say why, typed rejections
// with their numbers, gangs, TTLs, preemption with notices and grace, status
// and plans, step leases in workflows, abort signals, garbage collection and
// process exit.

const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const v8 = require('node:v8')
const vm = require('node:vm')
const { getEventListeners } = require('node:events')
const { spawnSync } = require('node:child_process')
const { Orchestrator, Lease } = require('..')
const { make, sleep, throwsPso, rejectsPso } = require('./helpers.cjs')

const T = { timeout: 10_000 }

/** An orchestrator with short resource periods and `systems` registered. */
function orch(t, systems, options = {}) {
  const o = make(t, {
    workers: 2,
    preemptionGraceMs: 50,
    idleLeaseAfterMs: 50,
    resourceAgingStepMs: 200,
    ...options,
  })
  for (const name of systems) o.register({ name })
  return o
}

const free = (o, dim) => o.resourceStatus().dimensions.find((d) => d.name === dim).free

/** Polls `cond` until it holds (fails after `ms`). */
async function eventually(cond, what, ms = 3000) {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`)
    await sleep(2)
  }
}

/** Whether this Node parses `using` declarations. */
function supportsUsing() {
  try {
    // eslint-disable-next-line no-new-func
    new Function('{ using x = null }')
    return true
  } catch {
    return false
  }
}

test('a lease holds its amounts until release(), Symbol.dispose or `using`', T, async (t) => {
  const o = orch(t, ['a'])
  o.setCapacity('cpu', 8)
  o.setCapacity('memory', 4096)
  const l = await o.allocateResources('a', { cpu: 3, memory: 1024, gpu: 0 })
  assert.ok(l instanceof Lease)
  assert.equal(l.id, 1, 'lease ids are serial numbers')
  assert.equal(l.system, 'a')
  assert.deepEqual(l.amounts, { cpu: 3, memory: 1024 }, 'zero amounts are ignored')
  assert.equal(l.held, true)
  assert.equal(l.expiresInMs, null)
  assert.deepEqual([free(o, 'cpu'), free(o, 'memory')], [5, 3072])
  assert.deepEqual(o.status('a').resourcesHeld, { cpu: 3, memory: 1024 })
  const st = o.resourceStatus()
  assert.equal(st.leases.length, 1)
  assert.equal(st.leases[0].id, l.id)
  l.touch()

  assert.equal(l.release(), true)
  assert.equal(l.release(), false, 'already released')
  assert.equal(l.held, false)
  assert.deepEqual(l.amounts, {})
  assert.deepEqual([free(o, 'cpu'), free(o, 'memory')], [8, 4096])
  assert.deepEqual(o.status('a').resourcesHeld, {})

  const d = await o.allocateResources('a', { cpu: 8 })
  assert.equal(d.id, 2, 'never reused')
  assert.equal(free(o, 'cpu'), 0)
  assert.equal(typeof d[Symbol.dispose], 'function')
  d[Symbol.dispose]()
  assert.equal(d.held, false)
  assert.equal(free(o, 'cpu'), 8)
  d[Symbol.dispose]() // idempotent

  if (supportsUsing()) {
    const scoped = new Function('o', `return (async () => {
      { using l = await o.allocateResources('a', { cpu: 2 }); if (!l.held) throw new Error('not held') }
    })()`)
    await scoped(o)
    assert.equal(free(o, 'cpu'), 8, '`using` released it at the end of the block')
  }
  assert.throws(() => new Lease(), 'Lease objects come from allocateResources() and allocateGang()')
})

test('a garbage-collected lease (or one nobody took) is released', T, async (t) => {
  v8.setFlagsFromString('--expose-gc')
  const gc = vm.runInNewContext('gc')
  const o = orch(t, ['a'])
  o.setCapacity('cpu', 4)
  await (async () => {
    const l = await o.allocateResources('a', { cpu: 3 })
    assert.equal(l.held, true)
  })()
  o.allocateResources('a', { cpu: 1 }) // resolved, never awaited
  await sleep(5)
  assert.equal(free(o, 'cpu'), 0)
  for (let i = 0; i < 20 && free(o, 'cpu') !== 4; i++) {
    gc()
    await sleep(10)
  }
  assert.equal(free(o, 'cpu'), 4, 'both leases were released by their finalizers')
  assert.equal(o.resourceStatus().leases.length, 0)
})

test('a waiting request never blocks the event loop and is granted by a release', T, async (t) => {
  const o = orch(t, ['a', 'b'])
  o.setCapacity('memory', 2560)
  const held = await o.allocateResources('a', { memory: 2048 })
  let granted = null
  const waiting = o.allocateResources('b', { memory: 2048 }).then((l) => (granted = l))
  // The event loop keeps turning while b waits.
  let ticks = 0
  const timer = setInterval(() => ticks++, 1)
  await eventually(() => ticks >= 5 && o.resourceStatus().waiters.length === 1, 'b to wait')
  clearInterval(timer)
  assert.equal(granted, null)
  const w = o.resourceStatus().waiters[0]
  assert.deepEqual(w.systems, ['b'])
  assert.deepEqual(w.amounts, { memory: 2048 })
  assert.equal(w.reason, 'needs 2048 memory, 512 free')
  assert.equal(w.priority, 'normal')
  assert.equal(w.ahead, 0)
  held.release()
  await waiting
  assert.equal(granted.system, 'b')
  assert.equal(granted.held, true)
  assert.equal(free(o, 'memory'), 512)
  assert.equal(o.resourceStatus().waiters.length, 0)
  granted.release()
})

test('a wait that runs out rejects with PSO_TIMEOUT saying how long and why', T, async (t) => {
  const o = orch(t, ['a', 'b', 'c'])
  o.setCapacity('memory', 2560)
  const held = await o.allocateResources('a', { memory: 2048 })
  // waitMs 0: answered at once.
  const now = await rejectsPso(o.allocateResources('b', { memory: 2048 }, { waitMs: 0 }), 'PSO_TIMEOUT', /needs 2048 memory, 512 free/)
  assert.equal(now.system, 'b')
  assert.equal(now.reason, 'needs 2048 memory, 512 free')
  // A bounded wait behind another waiter.
  const ahead = o.allocateResources('c', { memory: 2048 }, { priority: 'high' })
  const started = Date.now()
  const e = await rejectsPso(
    o.allocateResources('b', { memory: 2048 }, { waitMs: 50 }),
    'PSO_TIMEOUT',
    // How long it waited is measured: 50 ms or more (more on a loaded machine).
    /^b waited \d[\dhmsuµn ]* for resources: needs 2048 memory, 512 free; 1 request ahead$/,
  )
  assert.ok(Date.now() - started >= 45, `waited ${Date.now() - started} ms`)
  assert.ok(e.waitedMs >= 50, `waitedMs ${e.waitedMs}`)
  assert.equal(e.reason, 'needs 2048 memory, 512 free; 1 request ahead')
  assert.equal(o.resourceStatus().waiters.length, 1, 'the timed-out request is gone; c still waits')
  held.release()
  ;(await ahead).release()
  assert.equal(free(o, 'memory'), 2560)
})

test('rejections that need no waiting carry their numbers; bad input is PSO_INVALID_ARGUMENT', T, async (t) => {
  const o = orch(t, ['a'])
  o.setCapacity('memory', 1024)
  o.setCapacity('cpu', 4)
  let e = await rejectsPso(o.allocateResources('a', { memory: 2048 }), 'PSO_EXCEEDS_CAPACITY')
  assert.equal(e.message, 'a asks for 2048 memory, more than the whole capacity of 1024')
  assert.deepEqual([e.system, e.dimension, e.requested, e.capacity], ['a', 'memory', 2048, 1024])
  o.setGroupQuota('batch', 'memory', 256)
  e = await rejectsPso(o.allocateResources('a', { memory: 512 }, { group: 'batch' }), 'PSO_EXCEEDS_QUOTA', /exceeds group batch's quota of 256/)
  assert.deepEqual([e.group, e.dimension, e.requested, e.quota], ['batch', 'memory', 512, 256])
  e = await rejectsPso(o.allocateResources('a', { gpu: 1 }), 'PSO_NOT_FOUND')
  assert.equal(e.message, "unknown resource dimension 'gpu' (declared: memory, cpu)")
  assert.deepEqual([e.dimension, e.declared], ['gpu', ['memory', 'cpu']])
  e = await rejectsPso(o.allocateResources('ghost', { cpu: 1 }), 'PSO_NOT_FOUND', /unknown system 'ghost'/)
  assert.equal(e.system, 'ghost')

  const invalid = [
    [() => o.allocateResources(1, { cpu: 1 }), /system must be a string, got number/],
    [() => o.allocateResources('a', [1]), /amounts must be an object, got array/],
    [() => o.allocateResources('a', { cpu: -1 }), /amounts\.cpu must be a non-negative integer, got -1/],
    [() => o.allocateResources('a', { cpu: 1.5 }), /amounts\.cpu must be a non-negative integer, got 1\.5/],
    [() => o.allocateResources('a', { cpu: '2' }), /amounts\.cpu must be a number, got string/],
    [() => o.allocateResources('a', { cpu: 1 }, { wait: 5 }), /unknown key 'wait' in allocate options/],
    [() => o.allocateResources('a', { cpu: 1 }, { priority: 'urgent' }), /unknown priority 'urgent'/],
    [() => o.allocateResources('a', { cpu: 1 }, { ttlMs: 0 }), /ttlMs of allocate options must be a positive number/],
    [() => o.allocateResources('a', { cpu: 1 }, { waitMs: -1 }), /waitMs of allocate options must be a non-negative number/],
    [() => o.allocateResources('a', { cpu: 1 }, { preemptible: 'yes' }), /preemptible of allocate options must be a boolean/],
    [() => o.allocateResources('a', { cpu: 1 }, { signal: {} }), /signal of allocate options must be an AbortSignal/],
    [() => o.allocateGang({}), /parts must be an array, got object/],
    [() => o.allocateGang([{ system: 'a', amounts: { cpu: 1 }, extra: 1 }]), /unknown key 'extra' in parts\[0\]/],
    [() => o.allocateGang([]), /a request needs at least one part/],
  ]
  for (const [call, message] of invalid) await rejectsPso(call(), 'PSO_INVALID_ARGUMENT', message)
  throwsPso(() => o.setCapacity('', 1), 'PSO_INVALID_ARGUMENT', /invalid dimension name/)
  throwsPso(() => o.setCapacity('gpu', -1), 'PSO_INVALID_ARGUMENT', /capacity must be a non-negative integer/)
  throwsPso(() => o.setCapacity('gpu'), 'PSO_INVALID_ARGUMENT', /capacity must be a number/)
  throwsPso(() => o.setResourceWeight('a', 0), 'PSO_INVALID_ARGUMENT', /weight must be positive and finite, got 0/)
  throwsPso(() => o.setResourceWeight('ghost', 1), 'PSO_NOT_FOUND')
  throwsPso(() => o.setGroupQuota('g', 'nope', 1), 'PSO_NOT_FOUND', /unknown resource dimension 'nope'/)
  throwsPso(() => o.setGroupQuota('g', 'cpu', 1.5), 'PSO_INVALID_ARGUMENT')
  throwsPso(() => o.setStepResources('ghost', { cpu: 1 }), 'PSO_NOT_FOUND')
  throwsPso(() => o.setStepResources('a', { cpu: 1 }, { signal: null }), 'PSO_INVALID_ARGUMENT', /unknown key 'signal'/)
  throwsPso(() => o.optimizeResources('yes'), 'PSO_INVALID_ARGUMENT', /apply must be a boolean/)
  // Nothing is held or waiting after any of that.
  const st = o.resourceStatus()
  assert.deepEqual([st.leases.length, st.waiters.length], [0, 0])
  assert.ok(st.dimensions.every((d) => d.allocated === 0))
  o.setGroupQuota('batch', 'memory', null)
  ;(await o.allocateResources('a', { memory: 512 }, { group: 'batch' })).release()
})

test('gangs are all or nothing', T, async (t) => {
  const o = orch(t, ['trainer', 'loader', 'other'])
  o.setCapacity('gpu', 4)
  o.setCapacity('cpu', 8)
  const other = await o.allocateResources('other', { gpu: 2 })
  const gang = o.allocateGang([
    { system: 'trainer', amounts: { gpu: 2, cpu: 2 } },
    { system: 'loader', amounts: { gpu: 1, cpu: 4 }, priority: 'low' },
  ])
  await eventually(() => o.resourceStatus().waiters.length === 1, 'the gang to wait')
  const st = o.resourceStatus()
  assert.equal(st.dimensions.find((d) => d.name === 'cpu').allocated, 0, 'no part is held while the gang waits')
  assert.deepEqual(st.waiters[0].systems, ['trainer', 'loader'])
  assert.deepEqual(st.waiters[0].amounts, { cpu: 6, gpu: 3 })
  assert.equal(st.waiters[0].reason, 'needs 3 gpu, 2 free')
  assert.equal(st.waiters[0].priority, 'normal', 'served at the highest class among its parts')
  other.release()
  const leases = await gang
  assert.ok(Array.isArray(leases))
  assert.deepEqual(leases.map((l) => l.system), ['trainer', 'loader'])
  assert.deepEqual(leases.map((l) => l.amounts), [{ cpu: 2, gpu: 2 }, { cpu: 4, gpu: 1 }])
  assert.deepEqual([free(o, 'gpu'), free(o, 'cpu')], [1, 2])
  // One that could never fit is rejected at once; nothing is taken.
  await rejectsPso(o.allocateGang([{ system: 'trainer', amounts: { gpu: 3 } }, { system: 'loader', amounts: { gpu: 3 } }]), 'PSO_EXCEEDS_CAPACITY')
  // The shortest waitMs bounds the gang.
  await rejectsPso(
    o.allocateGang([{ system: 'trainer', amounts: { gpu: 2 } }, { system: 'loader', amounts: { cpu: 1 }, waitMs: 20 }]),
    'PSO_TIMEOUT',
    /^trainer waited .* for resources: needs 2 gpu, 1 free$/,
  )
  for (const l of leases) l.release()
  assert.deepEqual([free(o, 'gpu'), free(o, 'cpu')], [4, 8])
})

test('a TTL revokes the lease and wakes waiters', T, async (t) => {
  const o = orch(t, ['a', 'b'])
  o.setCapacity('cpu', 1)
  const l = await o.allocateResources('a', { cpu: 1 }, { ttlMs: 40 })
  assert.ok(l.expiresInMs > 0 && l.expiresInMs <= 40, `expiresInMs ${l.expiresInMs}`)
  assert.ok(o.resourceStatus().leases[0].ttlRemainingMs <= 40)
  const started = Date.now()
  const b = await o.allocateResources('b', { cpu: 1 })
  assert.ok(Date.now() - started >= 25, `granted after ${Date.now() - started} ms`)
  assert.equal(l.held, false, 'expired')
  assert.equal(l.expiresInMs, null)
  assert.equal(l.release(), false, 'releasing an expired lease does nothing')
  assert.equal(b.held, true)
  assert.equal(free(o, 'cpu'), 0, "b's lease is not double-counted")
  b.release()
})

test('a higher class preempts a preemptible holder: notice on the event loop, then the grace period', T, async (t) => {
  const o = orch(t, ['batch', 'online', 'polite'])
  o.setCapacity('cpu', 4)
  const lease = await o.allocateResources('batch', { cpu: 4 }, { priority: 'background', preemptible: true })
  assert.equal(o.resourceStatus().leases[0].preemptible, true)
  const notices = []
  let sync = true
  lease.onPreempt((notice) => {
    assert.equal(sync, false, 'never called synchronously')
    notices.push(notice)
  })
  const started = Date.now()
  const p = o.allocateResources('online', { cpu: 2 }, { priority: 'high' })
  sync = false
  await eventually(() => notices.length === 1, 'the preemption notice')
  assert.equal(o.resourceStatus().leases[0].revoking, true)
  const online = await p
  assert.ok(Date.now() - started >= 40, `the grace period (${Date.now() - started} ms)`)
  assert.deepEqual(Object.keys(notices[0]).sort(), ['graceMs', 'lease', 'system'])
  assert.equal(notices[0].lease, lease.id)
  assert.equal(notices[0].system, 'batch')
  assert.ok(notices[0].graceMs > 0 && notices[0].graceMs <= 50, `graceMs ${notices[0].graceMs}`)
  assert.equal(lease.held, false, 'revoked')
  assert.equal(online.held, true)
  assert.equal(free(o, 'cpu'), 2)
  online.release()

  // A holder that releases when told lets the waiter in before the grace ends.
  o.setCapacity('cpu', 2)
  const nice = await o.allocateResources('polite', { cpu: 2 }, { priority: 'low', preemptible: true })
  nice.onPreempt(() => nice.release())
  nice.onPreempt(() => nice.release()) // replaces the first
  const t0 = Date.now()
  const urgent = await o.allocateResources('online', { cpu: 2 }, { priority: 'critical' })
  assert.equal(nice.held, false)
  assert.ok(Date.now() - t0 < 2000)
  urgent.release()
  // Not preemptible: nobody is told, the higher class waits.
  const firm = await o.allocateResources('batch', { cpu: 2 }, { priority: 'low' })
  let told = false
  firm.onPreempt(() => (told = true))
  await rejectsPso(o.allocateResources('online', { cpu: 1 }, { priority: 'critical', waitMs: 80 }), 'PSO_TIMEOUT')
  assert.equal(told, false)
  assert.equal(firm.held, true)
  throwsPso(() => firm.onPreempt('no'), 'PSO_INVALID_ARGUMENT', /onPreempt callback must be a function, got string/)
  firm.release()
  firm.onPreempt(() => {}) // a released lease: nothing to watch
})

test('status lists dimensions, groups, leases and waiters in policy order; it is plain JSON', T, async (t) => {
  const o = orch(t, ['a', 'b', 'c'])
  o.setCapacity('memory', 2560)
  o.setGroupQuota('team', 'memory', 2048)
  const held = await o.allocateResources('a', { memory: 2048 }, { ttlMs: 60_000, group: 'team' })
  const high = o.allocateResources('b', { memory: 1024 }, { priority: 'high' })
  const normal = o.allocateResources('c', { memory: 2048 })
  const st = o.resourceStatus()
  assert.deepEqual(JSON.parse(JSON.stringify(st)), st, 'plain data')
  assert.deepEqual(Object.keys(st).sort(), ['dimensions', 'groups', 'leases', 'waiters'])
  assert.deepEqual(st.dimensions, [{ name: 'memory', capacity: 2560, allocated: 2048, free: 512 }])
  assert.deepEqual(st.groups, [{ name: 'team', quota: { memory: 2048 }, allocated: { memory: 2048 } }])
  const [l] = st.leases
  assert.deepEqual(Object.keys(l).sort(), ['ageMs', 'amounts', 'group', 'id', 'idleMs', 'preemptible', 'priority', 'revoking', 'system', 'ttlRemainingMs'])
  assert.deepEqual([l.id, l.system, l.group, l.amounts, l.priority, l.preemptible, l.revoking], [held.id, 'a', 'team', { memory: 2048 }, 'normal', false, false])
  assert.ok(l.ageMs >= 0 && l.idleMs >= 0 && l.ttlRemainingMs > 59_000 && l.ttlRemainingMs <= 60_000)
  assert.deepEqual(st.waiters.map((w) => w.systems[0]), ['b', 'c'])
  assert.deepEqual(Object.keys(st.waiters[0]).sort(), ['ahead', 'amounts', 'effectivePriority', 'priority', 'reason', 'systems', 'waitedMs'])
  assert.deepEqual([st.waiters[0].priority, st.waiters[0].effectivePriority], ['high', 'high'])
  assert.equal(st.waiters[1].reason, 'needs 2048 memory, 512 free; 1 request ahead')
  assert.equal(st.waiters[1].ahead, 1)
  // Aging: after an aging step (200 ms) c's class improves by one.
  await eventually(() => o.resourceStatus().waiters[1]?.effectivePriority === 'high', 'c to age', 3000)
  held.release()
  ;(await high).release()
  ;(await normal).release()
  const leaseless = await o.allocateResources('a', { memory: 1 })
  assert.equal(o.resourceStatus().leases[0].group, null)
  assert.equal(o.resourceStatus().leases[0].ttlRemainingMs, null)
  leaseless.release()
})

test('optimizeResources: a dry run plans, apply carries it out', T, async (t) => {
  const o = orch(t, ['a', 'b', 'svc'])
  o.setCapacity('cpu', 4)
  const idle = await o.allocateResources('a', { cpu: 2 })
  const busy = await o.allocateResources('b', { cpu: 1 })
  await sleep(70)
  busy.touch()
  const dry = o.optimizeResources()
  assert.equal(dry.applied, false)
  assert.equal(dry.actions.length, 1, JSON.stringify(dry))
  const [a] = dry.actions
  assert.deepEqual(Object.keys(a).sort(), ['action', 'idleMs', 'lease', 'system'])
  assert.deepEqual([a.action, a.lease, a.system], ['reclaim_idle', idle.id, 'a'])
  assert.ok(a.idleMs >= 50, `idleMs ${a.idleMs}`)
  assert.equal(idle.held, true, 'a dry run changes nothing')
  assert.deepEqual(o.optimizeResources(false).actions.map((x) => x.action), ['reclaim_idle'])
  const applied = o.optimizeResources(true)
  assert.equal(applied.applied, true)
  assert.equal(idle.held, false)
  assert.equal(busy.held, true)
  assert.equal(free(o, 'cpu'), 3)
  busy.release()

  // A concurrency limit that made steps wait grows by half.
  o.setOperation('svc', 'work', async () => { await sleep(5) })
  o.setConcurrencyLimit('svc', 1)
  await o.activateSystem('svc')
  const wf = o.workflow('w', Array.from({ length: 6 }, (_, i) => ({ name: `s${i}`, system: 'svc', op: 'work' })))
  assert.equal((await o.coordinateSystems(wf).result).state, 'succeeded')
  const plan = o.optimizeResources(true)
  const resize = plan.actions.find((x) => x.action === 'resize_concurrency')
  assert.ok(resize, JSON.stringify(plan))
  assert.deepEqual([resize.system, resize.from, resize.to], ['svc', 1, 2])
  assert.match(resize.reason, /waited a mean of/)
  assert.deepEqual(o.optimizeResources(false).actions, [], 'the measurements start over')
})

test('step leases limit how many steps of a system run at once, and come back', T, async (t) => {
  const o = orch(t, ['gpu-svc', 'prep'], { workers: 4 })
  o.setCapacity('gpu', 2)
  let running = 0
  let peak = 0
  o.setOperation('gpu-svc', 'train', async () => {
    peak = Math.max(peak, ++running)
    await sleep(10)
    running--
    return 'trained'
  })
  o.setOperation('prep', 'load', () => {
    // Downstream steps wait on this one: they hold nothing yet.
    return o.resourceStatus().dimensions[0].allocated
  })
  o.setStepResources('gpu-svc', { gpu: 1 }, { priority: 'high' })
  await o.activateAll()
  const steps = [{ name: 'load', system: 'prep', op: 'load' }]
  for (let i = 0; i < 6; i++) steps.push({ name: `t${i}`, system: 'gpu-svc', op: 'train', after: ['load'] })
  const r = await o.coordinateSystems(o.workflow('train', steps)).result
  assert.equal(r.state, 'succeeded', JSON.stringify(r.errors))
  assert.equal(r.outputs.load, 0)
  assert.equal(peak, 2, 'two gpus: two steps at a time')
  assert.equal(free(o, 'gpu'), 2, 'every step lease returned')

  // A request that can never fit fails the step with the reason.
  o.setStepResources('gpu-svc', { gpu: 3 })
  const bad = await o.coordinateSystems(o.workflow('big', [{ name: 'big', system: 'gpu-svc', op: 'train' }])).result
  assert.equal(bad.state, 'failed')
  assert.match(bad.errors.big, /more than the whole capacity of 2/)
  // Cancelling a run withdraws its waiting step requests.
  o.setStepResources('gpu-svc', { gpu: 1 })
  const hog = await o.allocateResources('prep', { gpu: 2 })
  const run = o.coordinateSystems(o.workflow('w', [{ name: 'a', system: 'gpu-svc', op: 'train' }, { name: 'b', system: 'gpu-svc', op: 'train' }]))
  await eventually(() => o.resourceStatus().waiters.length === 2, 'both steps to wait for a gpu')
  run.cancel()
  assert.equal((await run.result).state, 'cancelled')
  assert.equal(o.resourceStatus().waiters.length, 0)
  hog.release()
  o.setStepResources('gpu-svc', null)
  assert.equal((await o.coordinateSystems(o.workflow('free', [{ name: 'x', system: 'gpu-svc', op: 'train' }])).result).state, 'succeeded')
  assert.equal(free(o, 'gpu'), 2)
})

test('an AbortSignal withdraws a waiting request', T, async (t) => {
  const o = orch(t, ['a', 'b'])
  o.setCapacity('cpu', 1)
  o.setCapacity('memory', 10)
  const held = await o.allocateResources('a', { cpu: 1 })
  const c = new AbortController()
  const p = o.allocateResources('b', { cpu: 1 }, { signal: c.signal })
  await eventually(() => o.resourceStatus().waiters.length === 1, 'b to wait')
  assert.equal(getEventListeners(c.signal, 'abort').length, 1)
  c.abort()
  const e = await rejectsPso(p, 'PSO_CANCELLED', /^the request of b was cancelled$/)
  assert.equal(e.system, 'b')
  assert.equal(o.resourceStatus().waiters.length, 0)
  assert.equal(getEventListeners(c.signal, 'abort').length, 0, 'the listener is removed')
  // Already aborted: no request is made at all.
  await rejectsPso(o.allocateResources('b', { cpu: 1 }, { signal: AbortSignal.abort() }), 'PSO_CANCELLED')
  assert.equal(o.resourceStatus().waiters.length, 0)
  // A gang, withdrawn through the signal of one part.
  const g = new AbortController()
  const gang = o.allocateGang([{ system: 'a', amounts: { cpu: 1 } }, { system: 'b', amounts: { memory: 1 }, signal: g.signal }])
  await eventually(() => o.resourceStatus().waiters.length === 1, 'the gang to wait')
  g.abort()
  await rejectsPso(gang, 'PSO_CANCELLED')
  // Granted before the abort: the lease stands, and the listener goes.
  const late = new AbortController()
  held.release()
  const l = await o.allocateResources('b', { cpu: 1 }, { signal: late.signal })
  assert.equal(getEventListeners(late.signal, 'abort').length, 0)
  late.abort()
  assert.equal(l.held, true)
  l.release()
  assert.equal(free(o, 'cpu'), 1)
})

test('after close() resource calls fail with PSO_CLOSED, waiters are rejected, leases still release', T, async (t) => {
  const o = orch(t, ['a', 'b'])
  o.setCapacity('cpu', 1)
  const held = await o.allocateResources('a', { cpu: 1 })
  const waiting = o.allocateResources('b', { cpu: 1 })
  await eventually(() => o.resourceStatus().waiters.length === 1, 'b to wait')
  o.close()
  await rejectsPso(waiting, 'PSO_CLOSED')
  await rejectsPso(o.allocateResources('a', { cpu: 1 }), 'PSO_CLOSED')
  await rejectsPso(o.allocateGang([{ system: 'a', amounts: { cpu: 1 } }]), 'PSO_CLOSED')
  for (const call of [
    () => o.setCapacity('cpu', 2),
    () => o.setGroupQuota('g', 'cpu', 1),
    () => o.setResourceWeight('a', 2),
    () => o.setStepResources('a', null),
    () => o.resourceStatus(),
    () => o.optimizeResources(),
  ]) {
    throwsPso(call, 'PSO_CLOSED')
  }
  assert.equal(held.release(), true, 'a lease granted before close() is still released')
})

test('the resource options of the constructor are checked', T, () => {
  throwsPso(() => new Orchestrator({ resourceAgingStepMs: 0 }), 'PSO_INVALID_ARGUMENT', /resourceAgingStepMs must be a positive/)
  throwsPso(() => new Orchestrator({ preemptionGraceMs: -1 }), 'PSO_INVALID_ARGUMENT', /preemptionGraceMs must be a non-negative/)
  throwsPso(() => new Orchestrator({ idleLeaseAfterMs: 'soon' }), 'PSO_INVALID_ARGUMENT', /idleLeaseAfterMs must be a number/)
  const o = new Orchestrator({ workers: 1, resourceAgingStepMs: 10, preemptionGraceMs: 0, idleLeaseAfterMs: 1 })
  o.close()
})

test('many requests at once balance at the end; never above capacity', T, async (t) => {
  const o = orch(t, ['s0', 's1', 's2', 's3'])
  o.setCapacity('cpu', 10)
  o.setCapacity('memory', 100)
  o.setGroupQuota('g', 'memory', 40)
  // mulberry32: small, and its low bits are not periodic.
  let seed = 12345
  const rnd = (n) => {
    seed = (seed + 0x6d2b79f5) | 0
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) % n
  }
  const priorities = ['critical', 'high', 'normal', 'low', 'background']
  let granted = 0
  const jobs = Array.from({ length: 300 }, async () => {
    const opts = { priority: priorities[rnd(5)] }
    if (rnd(3) === 0) opts.group = 'g'
    if (rnd(4) === 0) opts.waitMs = rnd(5)
    try {
      const l = await o.allocateResources(`s${rnd(4)}`, { cpu: 1 + rnd(4), memory: 1 + rnd(30) }, opts)
      granted++
      assert.ok(o.resourceStatus().dimensions.every((d) => d.allocated <= d.capacity))
      await sleep(rnd(3))
      l.release()
    } catch (e) {
      assert.equal(e.code, 'PSO_TIMEOUT', e.message)
    }
  })
  await Promise.all(jobs)
  assert.ok(granted > 150, `granted ${granted}`)
  const st = o.resourceStatus()
  assert.deepEqual([st.leases.length, st.waiters.length], [0, 0])
  assert.ok(st.dimensions.every((d) => d.allocated === 0))
  assert.ok(st.groups.every((g) => Object.keys(g.allocated).length === 0))
})

// --- in a child process: the process exits on its own -----------------------

const PKG = JSON.stringify(path.resolve(__dirname, '..'))

function runChild(body) {
  const script = `
    const { Orchestrator } = require(${PKG})
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
    ;(async () => { ${body} })().then(
      () => console.log('finished'),
      (e) => { console.error(e); process.exitCode = 1 },
    )`
  const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 8000 })
  assert.equal(child.signal, null, `the child did not exit on its own within 8 s (killed); stderr: ${child.stderr}`)
  assert.equal(child.status, 0, `exit code ${child.status}; stderr: ${child.stderr}`)
  return child.stdout
}

test('the process exits after close() with requests waiting', { timeout: 20_000 }, () => {
  const stdout = runChild(`
    const o = new Orchestrator({ workers: 2 })
    o.register({ name: 'a' })
    o.register({ name: 'b' })
    o.setCapacity('cpu', 2)
    const held = await o.allocateResources('a', { cpu: 2 }, { preemptible: true })
    held.onPreempt(() => console.log('never'))
    const waiting = [
      o.allocateResources('b', { cpu: 1 }),
      o.allocateGang([{ system: 'a', amounts: { cpu: 1 } }, { system: 'b', amounts: { cpu: 1 } }]),
      o.allocateResources('b', { cpu: 1 }, { signal: new AbortController().signal }),
    ]
    // A request that asks for nothing is refused.
    await o.allocateResources('b', { cpu: 0 }).catch((e) => console.log(e.code))
    await sleep(20)
    o.close()
    for (const p of waiting) console.log(await p.then(() => 'granted', (e) => e.code))
  `)
  assert.equal(stdout, 'PSO_INVALID_ARGUMENT\nPSO_CLOSED\nPSO_CLOSED\nPSO_CLOSED\nfinished\n')
})

test('held leases and preemption callbacks do not keep the process alive', { timeout: 20_000 }, () => {
  const stdout = runChild(`
    const o = new Orchestrator({ workers: 1, preemptionGraceMs: 10_000 })
    o.register({ name: 'a' })
    o.setCapacity('cpu', 2)
    const kept = await o.allocateResources('a', { cpu: 1 }, { preemptible: true, priority: 'low', ttlMs: 60_000 })
    kept.onPreempt(() => console.log('told'))
    const released = await o.allocateResources('a', { cpu: 1 }, { preemptible: true })
    released.onPreempt(() => {})
    released.release()
    globalThis.kept = kept
  `)
  assert.equal(stdout, 'finished\n')
})
