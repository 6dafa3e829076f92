'use strict'
// Workflows (coordinateSystems): data flow, values, parallelism, failures,
// retries, timeouts, deadlines, cancellation, conditions, fan-out, limits,
// errors, definitions from files, many runs, and closing with runs in flight.
// Every result is checked for `counts.accepted === sum of terminal counts`.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { getEventListeners } = require('node:events')
const { spawnSync } = require('node:child_process')
const { Orchestrator, Run, Workflow } = require('..')
const { make, sleep, throwsPso } = require('./helpers.cjs')

const T = { timeout: 10_000 }

/** Awaits a run's result and checks that every step is accounted for. */
async function settle(run) {
  assert.ok(run instanceof Run)
  const r = await run.result
  accounted(r)
  assert.equal(run.done, true)
  return r
}

function accounted(r) {
  const c = r.counts
  assert.equal(c.unfinished, 0, 'no step is left unfinished')
  assert.equal(c.accepted, c.succeeded + c.failed + c.cancelled + c.timedOut + c.skipped, JSON.stringify(c))
  assert.equal(r.steps.length, c.accepted)
  for (const s of r.steps) {
    assert.ok(['succeeded', 'failed', 'cancelled', 'timed_out', 'skipped'].includes(s.state), `${s.name}: ${s.state}`)
  }
}

/** The record of step `name`. */
const step = (r, name) => r.steps.find((s) => s.name === name)

/** A barrier: resolves true once `n` callers arrived (false after 3 s). */
function barrier(n) {
  let arrived = 0
  let release
  const all = new Promise((resolve) => (release = resolve))
  return async () => {
    if (++arrived === n) release()
    return Promise.race([all.then(() => true), sleep(3000).then(() => false)])
  }
}

/** Polls `cond` until it holds (fails after `ms`). */
async function eventually(cond, what, ms = 2000) {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`)
    await sleep(2)
  }
}

/** A step function that waits for its signal to abort, recording that. */
function waitForAbort(log, name) {
  return (ctx) =>
    new Promise((resolve) => {
      ctx.signal.addEventListener('abort', () => {
        log.push(`aborted:${name}`)
        resolve('late')
      })
    })
}

test('data flows along named inputs; ctx describes the step; operations and functions mix', T, async (t) => {
  const o = make(t, { workers: 4 })
  const seen = {}
  o.register({
    name: 'db',
    operations: {
      get: (ctx) => {
        seen.get = { step: ctx.step, system: ctx.system, op: ctx.op, attempt: ctx.attempt, input: ctx.input }
        return { rows: [1, 2, 3], key: ctx.input.key }
      },
    },
  })
  o.register({ name: 'idx' })
  o.setOperation('idx', 'count', async (ctx) => {
    await sleep(10)
    return ctx.inputs.rows.rows.length
  })
  await o.activateAll()
  const wf = o.workflow('etl', [
    { name: 'fetch', system: 'db', op: 'get' },
    { name: 'count', system: 'idx', op: 'count', inputs: { rows: 'fetch' } },
    {
      name: 'report',
      fn: (ctx) => {
        seen.report = { inputs: ctx.inputs, input: ctx.input, runInput: ctx.runInput, system: ctx.system, op: ctx.op }
        return `${ctx.inputs.n} rows of ${ctx.inputs.data.key}`
      },
      inputs: { n: 'count', data: 'fetch' },
    },
    { name: 'last', fn: (ctx) => ctx.input === ctx.runInput, after: ['report'] },
  ])
  assert.ok(wf instanceof Workflow)
  assert.equal(wf.name, 'etl')
  assert.equal(wf.length, 4)
  assert.equal(wf.size, 4)
  assert.deepEqual(wf.stepNames, ['fetch', 'count', 'report', 'last'])
  assert.deepEqual(wf.systems.sort(), ['db', 'idx'])

  const run = o.coordinateSystems(wf, { input: { key: 'users' } })
  assert.equal(typeof run.id, 'number')
  assert.equal(run.workflow, 'etl')
  const r = await settle(run)
  assert.equal(r.state, 'succeeded')
  assert.equal(r.ok, true)
  assert.equal(r.workflow, 'etl')
  assert.equal(r.id, run.id)
  assert.deepEqual(r.outputs, {
    fetch: { rows: [1, 2, 3], key: 'users' },
    count: 3,
    report: '3 rows of users',
    last: true,
  })
  assert.deepEqual(r.errors, {})
  assert.deepEqual(seen.get, { step: 'fetch', system: 'db', op: 'get', attempt: 1, input: { key: 'users' } })
  assert.deepEqual(seen.report.inputs, { n: 3, data: { rows: [1, 2, 3], key: 'users' } })
  assert.deepEqual(seen.report.input, seen.report.inputs, 'with named inputs, ctx.input is their map')
  assert.deepEqual(seen.report.runInput, { key: 'users' })
  assert.equal(seen.report.system, null)
  assert.equal(seen.report.op, null)
  const fetch = step(r, 'fetch')
  assert.equal(fetch.system, 'db')
  assert.equal(fetch.operation, 'get')
  assert.equal(fetch.attempts, 1)
  assert.equal(fetch.parent, null)
  // pso-core records the thread that finished the step: a worker, or none
  // when the JS thread completed the deferred step itself.
  assert.ok(fetch.worker === null || typeof fetch.worker === 'number')
  assert.ok(step(r, 'count').ranMs >= 5, `an awaited Promise counts as run time (${step(r, 'count').ranMs} ms)`)
  assert.ok(r.elapsedMs > 0)

  const keys = o.estimates().map((e) => e.key).sort()
  assert.deepEqual(keys, ['db.get', 'idx.count'])
  for (const e of o.estimates()) {
    assert.ok(e.samples >= 1 && e.meanMs >= 0 && e.stddevMs >= 0, JSON.stringify(e))
  }
})

test('values cross both ways; values PSO cannot carry fail the step, naming the type', T, async (t) => {
  const o = make(t)
  const echo = (ctx) => ctx.input
  const big = 2n ** 60n
  const wf = o.workflow('values', [
    { name: 'echo', fn: echo },
    { name: 'undef', fn: () => undefined },
    { name: 'ints', fn: () => [0, -7, 2 ** 53, -(2 ** 53), 1.5, -0, 2 ** 60] },
    { name: 'bigint', fn: () => [big, 5n] },
    { name: 'bytes', fn: () => ({ buf: Buffer.from('hi'), u8: new Uint8Array([1, 2, 3]) }) },
    { name: 'proto', fn: () => JSON.parse('{"__proto__": 1, "constructor": 2}') },
    { name: 'nullproto', fn: () => Object.assign(Object.create(null), { a: 1 }) },
    { name: 'date', fn: () => ({ when: [1, new Date()] }) },
    { name: 'map', fn: () => new Map() },
    { name: 'klass', fn: () => new (class Point {})() },
    { name: 'func', fn: () => ({ f: () => 1 }) },
    { name: 'sym', fn: () => Symbol('s') },
    { name: 'f64', fn: () => new Float64Array(2) },
    { name: 'hugeint', fn: () => 2n ** 70n },
    { name: 'cycle', fn: () => { const a = {}; a.self = a; return a } },
    { name: 'promise', fn: async () => ({ p: Promise.resolve(1) }) },
    { name: 'getter', fn: () => ({ ok: 1, get bad() { throw new RangeError('no peeking') } }) },
    { name: 'trap', fn: async () => [new Proxy({}, { ownKeys() { throw new Error('trapped') } })] },
    { name: 'fine', fn: () => 'still fine' },
  ])
  const input = { s: 'x', n: 1, f: 0.25, b: true, z: null, u: undefined, list: [1, [2, { deep: 'y' }]], hole: [1, , 3] }
  const r = await settle(o.coordinateSystems(wf, { input }))
  assert.equal(r.state, 'failed')
  assert.deepEqual(r.outputs.echo, { s: 'x', n: 1, f: 0.25, b: true, z: null, u: null, list: [1, [2, { deep: 'y' }]], hole: [1, null, 3] })
  assert.equal(r.outputs.undef, null)
  const ints = r.outputs.ints
  assert.deepEqual(ints.slice(0, 5), [0, -7, 2 ** 53, -(2 ** 53), 1.5])
  assert.ok(Object.is(ints[5], -0), '-0 stays a float')
  assert.equal(ints[6], 2 ** 60, 'a large float stays a number')
  assert.deepEqual(r.outputs.bigint, [big, 5], 'integers beyond 2^53 come back as BigInt')
  assert.ok(Buffer.isBuffer(r.outputs.bytes.buf) && Buffer.isBuffer(r.outputs.bytes.u8))
  assert.deepEqual([...r.outputs.bytes.buf], [104, 105])
  assert.deepEqual([...r.outputs.bytes.u8], [1, 2, 3])
  assert.deepEqual(Object.keys(r.outputs.proto).sort(), ['__proto__', 'constructor'])
  assert.equal(Object.getPrototypeOf(r.outputs.proto), Object.prototype, 'a "__proto__" key stays a key')
  assert.deepEqual({ ...r.outputs.nullproto }, { a: 1 })

  const expect = {
    date: /a Date \(at \.when\[1\]\)/,
    map: /an instance of Map/,
    klass: /an instance of Point/,
    func: /a function \(at \.f\)/,
    sym: /a symbol/,
    f64: /a Float64Array/,
    hugeint: /a BigInt outside the 64-bit integer range/,
    cycle: /nested more than \d+ levels deep \(a cycle\?\)/,
    promise: /a Promise \(at \.p\)/,
  }
  for (const [name, re] of Object.entries(expect)) {
    const s = step(r, name)
    assert.equal(s.state, 'failed', name)
    assert.match(s.error, /^TypeError: the value step '\w+' returned is /, name)
    assert.match(s.error, re, name)
    assert.equal(r.errors[name], s.error)
  }
  // A getter or Proxy trap that throws fails only its own step (the
  // exception does not leak into the next call).
  assert.equal(r.errors.getter, "TypeError: the value step 'getter' returned could not be read (at .bad): reading it threw RangeError: no peeking")
  assert.equal(r.errors.trap, "TypeError: the value step 'trap' returned could not be read (at [0]): reading it threw Error: trapped")
  assert.equal(r.outputs.fine, 'still fine')
  assert.equal(r.counts.failed, Object.keys(expect).length + 2)
})

test('run input and fan-out child inputs are checked when given', T, async (t) => {
  const o = make(t)
  const wf = o.workflow('w', [{ name: 'a', fn: (ctx) => ctx.fanOut([{ fn: () => 1, input: new Date() }]) }])
  throwsPso(() => o.coordinateSystems(wf, { input: { at: new Date() } }), 'PSO_INVALID_ARGUMENT', /options\.input is a Date \(at \.at\)/)
  const r = await settle(o.coordinateSystems(wf))
  assert.equal(step(r, 'a').state, 'failed')
  assert.match(r.errors.a, /^Error: input of ctx\.fanOut\(\) child \[0\] is a Date/)
})

test('independent async steps run in parallel', T, async (t) => {
  const o = make(t, { workers: 4 })
  const arrive = barrier(4)
  let active = 0
  let most = 0
  const fn = async () => {
    most = Math.max(most, ++active)
    const together = await arrive()
    active--
    return together
  }
  const wf = o.workflow('par', ['a', 'b', 'c', 'd'].map((name) => ({ name, fn })))
  const r = await settle(o.coordinateSystems(wf))
  assert.equal(r.state, 'succeeded')
  assert.deepEqual(r.outputs, { a: true, b: true, c: true, d: true }, 'all four were pending at once')
  assert.equal(most, 4)
})

test('pending step Promises hold no worker: many more in flight than workers', T, async (t) => {
  const o = make(t, { workers: 1 })
  o.register({ name: 'io', operations: { wait: async (ctx) => { await arrive(); return ctx.input } } })
  await o.activateAll()
  const n = 200
  const arrive = barrier(n)
  let active = 0
  let most = 0
  const fn = async () => {
    most = Math.max(most, ++active)
    const together = await arrive()
    active--
    return together
  }
  const steps = Array.from({ length: n / 2 }, (_, i) => ({ name: `f${i}`, fn }))
  for (let i = 0; i < n / 2; i++) steps.push({ name: `o${i}`, system: 'io', op: 'wait' })
  const r = await settle(o.coordinateSystems(o.workflow('wide', steps), { input: true }))
  assert.equal(r.state, 'succeeded')
  assert.equal(r.counts.succeeded, n)
  assert.ok(Object.values(r.outputs).every((v) => v === true), `all ${n} were pending at once on 1 worker`)
  assert.equal(most, n / 2)
  // A step whose Promise never settles does not stop the only worker from
  // running everything else, in this run or another one.
  const stuck = o.workflow('stuck', [{ name: 'never', fn: () => new Promise(() => {}) }])
  const stuckRun = o.coordinateSystems(stuck)
  const quick = await settle(o.coordinateSystems(o.workflow('quick', [{ name: 'a', fn: () => 1 }, { name: 'b', fn: (c) => c.inputs.x + 1, inputs: { x: 'a' } }])))
  assert.equal(quick.outputs.b, 2)
  assert.equal(stuckRun.done, false)
  assert.equal(stuckRun.cancel(), true)
  const stopped = await settle(stuckRun)
  assert.equal(step(stopped, 'never').state, 'cancelled')
})

test('a timed-out or cancelled pending step gives back its concurrency slot at once', T, async (t) => {
  const o = make(t, { workers: 2 })
  const log = []
  o.register({
    name: 'svc',
    concurrency: 1,
    operations: {
      hang: (ctx) => new Promise((resolve) => ctx.signal.addEventListener('abort', () => { log.push(`aborted:${ctx.step}`); resolve('late') })),
      quick: (ctx) => ctx.step,
    },
  })
  await o.activateAll()
  const wf = o.workflow('w', [
    { name: 'hang', system: 'svc', op: 'hang', timeoutMs: 30 },
    { name: 'next', system: 'svc', op: 'quick' },
  ])
  const started = Date.now()
  const r = await settle(o.coordinateSystems(wf))
  assert.ok(Date.now() - started < 2000)
  assert.equal(step(r, 'hang').state, 'timed_out')
  assert.equal(r.outputs.next, 'next', 'the slot was given back when the step timed out')
  await eventually(() => log.includes('aborted:hang'), 'the timed-out step to see its signal abort')

  // Never settling and not listening: the slot still comes back.
  o.setOperation('svc', 'hang', () => new Promise(() => {}))
  const wf2 = o.workflow('w2', [
    { name: 'hang', system: 'svc', op: 'hang', timeoutMs: 20 },
    { name: 'next', system: 'svc', op: 'quick' },
  ])
  const r2 = await settle(o.coordinateSystems(wf2))
  assert.equal(step(r2, 'hang').state, 'timed_out')
  assert.equal(r2.outputs.next, 'next')
  // At a run deadline, too (the slot comes back when the run has ended).
  const r3 = await settle(o.coordinateSystems(o.workflow('w3', [{ name: 'hang', system: 'svc', op: 'hang' }]), { deadlineMs: 20 }))
  assert.equal(step(r3, 'hang').state, 'timed_out')
  assert.equal((await settle(o.coordinateSystems(o.workflow('w4', [{ name: 'next', system: 'svc', op: 'quick' }])))).outputs.next, 'next')
  // And when the run is cancelled.
  const run = o.coordinateSystems(o.workflow('w5', [{ name: 'hang', system: 'svc', op: 'hang' }]))
  await sleep(5)
  run.cancel()
  assert.equal(step(await settle(run), 'hang').state, 'cancelled')
  assert.equal((await settle(o.coordinateSystems(o.workflow('w6', [{ name: 'next', system: 'svc', op: 'quick' }])))).outputs.next, 'next')
})

test('fan-out needs the step function to name ctx.fanOut; otherwise the step fails saying why', T, async (t) => {
  const o = make(t, { workers: 1 })
  const helper = (c) => c['fan' + 'Out']([{ fn: () => 1 }])
  const wf = o.workflow('w', [
    { name: 'indirect', fn: (ctx) => helper(ctx) },
    { name: 'direct', fn: async (ctx) => { await sleep(1); ctx.fanOut([{ fn: () => 2 }, { fn: async () => 3 }]) } },
  ])
  const r = await settle(o.coordinateSystems(wf))
  assert.equal(step(r, 'indirect').state, 'failed')
  assert.match(r.errors.indirect, /ctx\.fanOut\(\) in step 'indirect': this step's function was run deferred .* when its own source text mentions fanOut/)
  assert.deepEqual(r.outputs.direct, [2, 3])
})

test('a failure cancels what depends on it; independent branches continue', T, async (t) => {
  const o = make(t)
  const ran = []
  const fn = (name) => (ctx) => {
    ran.push(name)
    return name
  }
  const wf = o.workflow('branches', [
    { name: 'bad', fn: () => { throw new Error('disk full') } },
    { name: 'child', fn: fn('child'), inputs: { x: 'bad' } },
    { name: 'grandchild', fn: fn('grandchild'), after: ['child'] },
    { name: 'other', fn: async () => { await sleep(5); ran.push('other'); return 'other' } },
    { name: 'after-other', fn: fn('after-other'), after: ['other'] },
  ])
  const r = await settle(o.coordinateSystems(wf))
  assert.equal(r.state, 'failed')
  assert.equal(r.ok, false)
  assert.deepEqual(ran.sort(), ['after-other', 'other'])
  assert.equal(step(r, 'bad').state, 'failed')
  assert.equal(r.errors.bad, 'Error: disk full')
  assert.equal(step(r, 'child').state, 'cancelled')
  assert.equal(r.errors.child, "upstream step 'bad' did not succeed")
  assert.equal(step(r, 'child').attempts, 0)
  assert.equal(step(r, 'grandchild').state, 'cancelled')
  assert.deepEqual(r.outputs, { other: 'other', 'after-other': 'after-other' })
  assert.deepEqual([r.counts.failed, r.counts.cancelled, r.counts.succeeded], [1, 2, 2])
})

test('throws and rejections fail the step as "Type: message"', T, async (t) => {
  const o = make(t)
  class QuotaError extends Error {
    constructor(m) {
      super(m)
      this.name = 'QuotaError'
    }
  }
  const wf = o.workflow('errors', [
    { name: 'throws', fn: () => { throw new TypeError('bad input') } },
    { name: 'rejects', fn: async () => { await sleep(1); throw new RangeError('too far') } },
    { name: 'rejected', fn: () => Promise.reject(new QuotaError('over quota')) },
    { name: 'string', fn: () => { throw 'oops' } },
    { name: 'number', fn: () => Promise.reject(42) },
    { name: 'thenable', fn: () => ({ then: (ok, fail) => fail(new Error('via then')) }) },
  ])
  const r = await settle(o.coordinateSystems(wf))
  assert.equal(r.state, 'failed')
  assert.deepEqual(r.errors, {
    throws: 'TypeError: bad input',
    rejects: 'RangeError: too far',
    rejected: 'QuotaError: over quota',
    string: 'string: oops',
    number: 'number: 42',
    thenable: 'Error: via then',
  })
  assert.equal(r.counts.failed, 6)
})

test('retries: attempts count up; a step that keeps failing gives up', T, async (t) => {
  const o = make(t)
  const attempts = []
  const wf = o.workflow('retry', [
    {
      name: 'flaky',
      retries: 3,
      backoffMs: 1,
      maxBackoffMs: 5,
      fn: async (ctx) => {
        attempts.push(ctx.attempt)
        if (ctx.attempt < 3) throw new Error(`attempt ${ctx.attempt}`)
        return ctx.attempt
      },
    },
    { name: 'hopeless', retries: 2, backoffMs: 1, fn: () => { throw new Error('never') } },
    { name: 'after', fn: (ctx) => ctx.inputs.n * 10, inputs: { n: 'flaky' } },
  ])
  const r = await settle(o.coordinateSystems(wf))
  assert.deepEqual(attempts, [1, 2, 3])
  assert.equal(r.outputs.flaky, 3)
  assert.equal(r.outputs.after, 30)
  assert.equal(step(r, 'flaky').attempts, 3)
  assert.equal(step(r, 'hopeless').state, 'failed')
  assert.equal(step(r, 'hopeless').attempts, 3)
  assert.equal(r.errors.hopeless, 'Error: never')
})

test('a step timeout aborts ctx.signal, frees the worker, and is not retried', T, async (t) => {
  const o = make(t, { workers: 1 })
  const log = []
  let calls = 0
  const wf = o.workflow('slow', [
    { name: 'slow', timeoutMs: 50, retries: 2, fn: (ctx) => { calls++; return waitForAbort(log, 'slow')(ctx) } },
    { name: 'never', timeoutMs: 30, fn: () => new Promise(() => {}) },
    { name: 'dependent', fn: () => 1, after: ['slow'] },
    { name: 'free', fn: () => 'ran', after: ['never'] },
  ])
  const started = Date.now()
  const r = await settle(o.coordinateSystems(wf))
  assert.ok(Date.now() - started < 2000)
  assert.equal(r.state, 'failed')
  assert.equal(step(r, 'slow').state, 'timed_out')
  assert.equal(r.errors.slow, 'handler timed out after 50ms')
  assert.equal(calls, 1, 'timeouts are not retried')
  assert.equal(step(r, 'never').state, 'timed_out')
  assert.equal(step(r, 'dependent').state, 'cancelled')
  assert.equal(r.counts.timedOut, 2)
  await eventually(() => log.includes('aborted:slow'), 'ctx.signal of the timed-out step to abort')
  // The only worker was given back: another run completes.
  const again = await settle(o.coordinateSystems(o.workflow('quick', [{ name: 'q', fn: () => 'ok' }])))
  assert.equal(again.outputs.q, 'ok')
})

test('the run deadline times out everything unfinished', T, async (t) => {
  const o = make(t, { workers: 2 })
  const log = []
  const wf = o.workflow('deadline', [
    { name: 'long', fn: waitForAbort(log, 'long') },
    { name: 'next', fn: () => 1, after: ['long'] },
    { name: 'quick', fn: () => 'done' },
  ])
  const r = await settle(o.coordinateSystems(wf, { deadlineMs: 80 }))
  assert.equal(r.state, 'timed_out')
  assert.equal(step(r, 'long').state, 'timed_out')
  assert.equal(step(r, 'next').state, 'timed_out')
  assert.equal(r.errors.next, 'run deadline passed')
  assert.equal(r.outputs.quick, 'done')
  assert.ok(r.elapsedMs >= 70 && r.elapsedMs < 3000, `elapsed ${r.elapsedMs}`)
  await eventually(() => log.includes('aborted:long'), 'ctx.signal to abort at the deadline')
})

test('cancel() stops a run: running steps see ctx.signal abort, the rest is cancelled', T, async (t) => {
  const o = make(t)
  const log = []
  let started
  const running = new Promise((resolve) => (started = resolve))
  const wf = o.workflow('cancel', [
    { name: 'long', fn: (ctx) => { started(); return waitForAbort(log, 'long')(ctx) } },
    { name: 'next', fn: () => 1, after: ['long'] },
  ])
  const run = o.coordinateSystems(wf)
  await running
  const p = run.progress()
  assert.equal(p.state, 'running')
  assert.equal(p.counts.accepted, 2)
  assert.ok(p.counts.unfinished >= 1)
  assert.equal(run.done, false)
  assert.equal(run.cancel(), true)
  assert.equal(run.cancel(), false, 'a second cancel() does nothing')
  const r = await settle(run)
  assert.equal(r.state, 'cancelled')
  assert.equal(step(r, 'next').state, 'cancelled')
  // A running step's late result is ignored; it ends cancelled, with this text.
  assert.equal(step(r, 'long').state, 'cancelled')
  assert.match(r.errors.long, /the run was stopped while this step was running; its ctx\.signal was aborted/)
  assert.ok(log.includes('aborted:long'))
  assert.equal(run.progress().state, 'cancelled')
  assert.equal(run.cancel(), false)
})

test('an AbortSignal cancels the run: aborted later, or already aborted', T, async (t) => {
  const o = make(t)
  const log = []
  let calls = 0
  let started
  const running = new Promise((resolve) => (started = resolve))
  const wf = o.workflow('signal', [
    { name: 'long', fn: (ctx) => { calls++; started(); return waitForAbort(log, 'long')(ctx) } },
    { name: 'next', fn: () => { calls++ }, after: ['long'] },
  ])
  const later = new AbortController()
  const run = o.coordinateSystems(wf, { signal: later.signal })
  assert.equal(getEventListeners(later.signal, 'abort').length, 1)
  await running
  later.abort()
  const r = await settle(run)
  assert.equal(r.state, 'cancelled')
  assert.ok(log.includes('aborted:long'))
  assert.equal(getEventListeners(later.signal, 'abort').length, 0, 'the listener is removed when the run ends')

  calls = 0
  const r2 = await settle(o.coordinateSystems(wf, { signal: AbortSignal.abort() }))
  assert.equal(r2.state, 'cancelled')
  assert.equal(calls, 0, 'no step function runs in a run whose signal was already aborted')
  assert.equal(r2.counts.succeeded, 0)

  // Runs sharing a signal share one listener; aborting it cancels them all.
  const shared = new AbortController()
  const many = Array.from({ length: 20 }, () => o.coordinateSystems(wf, { signal: shared.signal }))
  assert.equal(getEventListeners(shared.signal, 'abort').length, 1)
  shared.abort()
  for (const run of many) assert.equal((await settle(run)).state, 'cancelled')
  assert.equal(getEventListeners(shared.signal, 'abort').length, 0)

  // A signal that never aborts: the run finishes normally and stops listening.
  const idle = new AbortController()
  const quick = o.workflow('quick', [{ name: 'q', fn: () => 1 }])
  const both = [o.coordinateSystems(quick, { signal: idle.signal }), o.coordinateSystems(quick, { signal: idle.signal })]
  for (const run of both) assert.equal((await settle(run)).state, 'succeeded')
  assert.equal(getEventListeners(idle.signal, 'abort').length, 0)
})

test('conditions: a predicate or an upstream step name; skipped steps propagate', T, async (t) => {
  const o = make(t)
  const seen = []
  const wf = o.workflow('when', [
    { name: 'yes', fn: () => 'x' },
    { name: 'no', fn: () => 0 },
    { name: 'ifYes', fn: () => 'ran', when: 'yes' },
    { name: 'ifNo', fn: () => 'ran', when: 'no' },
    { name: 'afterSkipped', fn: () => 'ran', after: ['ifNo'] },
    {
      name: 'pred',
      fn: () => 'ran',
      inputs: { v: 'yes' },
      when: (ctx) => {
        seen.push([ctx.step, ctx.inputs.v, ctx.attempt, ctx.signal.aborted])
        return ctx.inputs.v === 'x'
      },
    },
    { name: 'predFalse', fn: () => 'ran', when: () => null },
    { name: 'predThrows', fn: () => 'ran', when: () => { throw new RangeError('cannot decide') } },
    { name: 'predAsync', fn: () => 'ran', when: async () => true },
    { name: 'predFanOut', fn: () => 'ran', when: (ctx) => ctx.fanOut([]) },
  ])
  const r = await settle(o.coordinateSystems(wf))
  assert.equal(r.outputs.ifYes, 'ran')
  assert.equal(step(r, 'ifNo').state, 'skipped')
  assert.equal(step(r, 'afterSkipped').state, 'skipped')
  assert.equal(r.outputs.pred, 'ran')
  assert.deepEqual(seen, [['pred', 'x', 1, false]])
  assert.equal(step(r, 'predFalse').state, 'skipped')
  // A condition that throws fails its step with the throw.
  assert.equal(step(r, 'predThrows').state, 'failed')
  assert.equal(r.errors.predThrows, 'RangeError: cannot decide')
  assert.equal(step(r, 'predAsync').state, 'failed')
  assert.match(r.errors.predAsync, /returned a Promise; conditions must decide synchronously/)
  assert.equal(step(r, 'predFanOut').state, 'failed')
  assert.match(r.errors.predFanOut, /ctx\.fanOut\(\) cannot be called from a when\(\) condition/)
  assert.equal(r.counts.skipped, 3)
})

test('fan-out: function and system-operation children, in order, also after an await', T, async (t) => {
  const o = make(t, { workers: 3 })
  o.register({ name: 'math', operations: { square: (ctx) => ctx.input * ctx.input } })
  await o.activateAll()
  let saved
  const wf = o.workflow('fan', [
    { name: 'list', fn: () => [1, 2, 3] },
    {
      name: 'split',
      inputs: { xs: 'list' },
      fn: async (ctx) => {
        saved = ctx
        ctx.fanOut(ctx.inputs.xs.map((x) => ({ fn: async (c) => { await sleep(1); return c.input + 100 }, input: x })))
        await sleep(1)
        ctx.fanOut([{ system: 'math', op: 'square', input: 9 }])
        return 'discarded'
      },
    },
    { name: 'sum', fn: (ctx) => ctx.inputs.parts.reduce((a, b) => a + b, 0), inputs: { parts: 'split' } },
    { name: 'badChild', fn: (ctx) => ctx.fanOut([{ fn: () => 1 }, { fn: () => { throw new Error('child broke') } }]) },
    { name: 'nested', fn: (ctx) => ctx.fanOut([{ fn: (c) => c.fanOut([{ fn: () => 1 }]) }]) },
    { name: 'unknownOp', fn: (ctx) => ctx.fanOut([{ system: 'math', op: 'cube', input: 2 }]) },
    { name: 'badShape', fn: (ctx) => ctx.fanOut([{ input: 1 }]) },
    { name: 'empty', fn: (ctx) => { ctx.fanOut([]); return 'plain' } },
  ])
  const r = await settle(o.coordinateSystems(wf))
  assert.deepEqual(r.outputs.split, [101, 102, 103, 81])
  assert.equal(r.outputs.sum, 387)
  assert.equal(r.outputs.empty, 'plain')
  const kids = r.steps.filter((s) => s.parent === 'split')
  assert.deepEqual(kids.map((k) => k.name), ['split[0]', 'split[1]', 'split[2]', 'split[3]'])
  assert.deepEqual([kids[3].system, kids[3].operation], ['math', 'square'])
  assert.equal(step(r, 'badChild').state, 'failed')
  assert.equal(step(r, 'badChild[1]').state, 'failed')
  assert.equal(r.errors['badChild[1]'], 'Error: child broke')
  assert.equal(step(r, 'nested').state, 'failed')
  assert.match(r.errors['nested[0]'], /a fan-out child cannot fan out/)
  assert.equal(step(r, 'unknownOp').state, 'failed')
  assert.match(r.errors.unknownOp, /system 'math' has no operation 'cube'/)
  assert.match(r.errors.badShape, /^Error: ctx\.fanOut\(\) child \[0\] must have either fn, or system and op/)
  // 8 steps; children: split 4, badChild 2, nested 1 (unknownOp never fanned out).
  assert.equal(r.counts.accepted, 8 + 4 + 2 + 1)
  // fanOut() after the step finished is refused.
  throwsPso(() => saved.fanOut([{ fn: () => 1 }]), 'PSO_INVALID_ARGUMENT', /after its step had finished/)
})

test('a concurrency limit is never exceeded; it can be changed and removed', T, async (t) => {
  const o = make(t, { workers: 6 })
  let active = 0
  let most = 0
  const work = async () => {
    most = Math.max(most, ++active)
    await sleep(3)
    active--
    return most
  }
  o.register({ name: 'gpu', concurrency: 2, operations: { work } })
  await o.activateAll()
  const wf = o.workflow('limited', Array.from({ length: 12 }, (_, i) => ({ name: `s${i}`, system: 'gpu', op: 'work' })))
  const r = await settle(o.coordinateSystems(wf))
  assert.equal(r.state, 'succeeded')
  assert.equal(most, 2)
  o.setConcurrencyLimit('gpu', 1)
  most = 0
  await settle(o.coordinateSystems(wf))
  assert.equal(most, 1)
  o.setConcurrencyLimit('gpu', null)
  most = 0
  await settle(o.coordinateSystems(wf))
  assert.ok(most >= 2, `without a limit ${most} ran at once`)
  throwsPso(() => o.setConcurrencyLimit('gpu', 0), 'PSO_INVALID_ARGUMENT', /at least 1/)
  throwsPso(() => o.setConcurrencyLimit('nope', 1), 'PSO_NOT_FOUND')
  throwsPso(() => o.setConcurrencyLimit('gpu', -1), 'PSO_INVALID_ARGUMENT')
})

test('running on a system that is not Active is PSO_NOT_ACTIVE, naming system and step', T, async (t) => {
  const o = make(t)
  o.register({ name: 'db', operations: { get: () => 1 } })
  const wf = o.workflow('w', [{ name: 'first', fn: () => 1 }, { name: 'read', system: 'db', op: 'get' }])
  const e = throwsPso(() => o.coordinateSystems(wf), 'PSO_NOT_ACTIVE', /step 'read' uses system 'db', which is Registered/)
  assert.deepEqual([e.workflow, e.step, e.system, e.state], ['w', 'read', 'db', 'Registered'])
  await o.activateAll()
  const r = await settle(o.coordinateSystems(wf))
  assert.equal(r.state, 'succeeded')
})

test('build errors name the step: unknown system, operation and step, duplicates, cycles', T, async (t) => {
  const o = make(t)
  o.register({ name: 'db', operations: { get: () => 1, put: () => 2 } })
  let e = throwsPso(() => o.workflow('w', [{ name: 's', system: 'nope', op: 'get' }]), 'PSO_NOT_FOUND', /step 's' uses unknown system 'nope'/)
  assert.deepEqual([e.workflow, e.step, e.system], ['w', 's', 'nope'])
  e = throwsPso(() => o.workflow('w', [{ name: 's', system: 'db', op: 'del' }]), 'PSO_NOT_FOUND', /step 's' uses unknown operation 'del' of system 'db' \(it has: get, put\)/)
  assert.deepEqual([e.op, e.available], ['del', ['get', 'put']])
  e = throwsPso(() => o.workflow('w', [{ name: 's', fn: () => 1, inputs: { x: 'ghost' } }]), 'PSO_NOT_FOUND', /step 's' refers to unknown step 'ghost'/)
  assert.deepEqual([e.step, e.missing], ['s', 'ghost'])
  throwsPso(() => o.workflow('w', [{ name: 's', fn: () => 1, after: ['ghost'] }]), 'PSO_NOT_FOUND', /unknown step 'ghost'/)
  throwsPso(() => o.workflow('w', [{ name: 's', fn: () => 1, when: 'ghost' }]), 'PSO_NOT_FOUND', /unknown step 'ghost'/)
  e = throwsPso(() => o.workflow('w', [{ name: 's', fn: () => 1 }, { name: 's', fn: () => 2 }]), 'PSO_ALREADY_EXISTS', /step 's' is defined twice/)
  assert.equal(e.step, 's')
  e = throwsPso(
    () => o.workflow('w', [{ name: 'a', fn: () => 1, after: ['b'] }, { name: 'b', fn: () => 1, after: ['a'] }]),
    'PSO_CYCLE',
    /dependency cycle/,
  )
  assert.equal(e.path[0], e.path[e.path.length - 1])

  // Bad step specs are argument errors naming the step and field.
  throwsPso(() => o.workflow('w', [{ name: 's', fn: () => 1, retrys: 2 }]), 'PSO_INVALID_ARGUMENT', /unknown key 'retrys' in step 's'/)
  throwsPso(() => o.workflow('w', [{ name: 's' }]), 'PSO_INVALID_ARGUMENT', /step 's' needs either fn, or system and op/)
  throwsPso(() => o.workflow('w', [{ name: 's', fn: () => 1, system: 'db', op: 'get' }]), 'PSO_INVALID_ARGUMENT', /give either fn, or system and op/)
  throwsPso(() => o.workflow('w', [{ name: 's', system: 'db' }]), 'PSO_INVALID_ARGUMENT', /needs either fn, or system and op/)
  throwsPso(() => o.workflow('w', [{ name: 's', fn: 'f' }]), 'PSO_INVALID_ARGUMENT', /fn of step 's' must be a function, got string/)
  throwsPso(() => o.workflow('w', [{ name: 's', fn: () => 1, when: 3 }]), 'PSO_INVALID_ARGUMENT', /when of step 's' must be a function or a step name, got number/)
  throwsPso(() => o.workflow('w', [{ name: 's', fn: () => 1, retries: -1 }]), 'PSO_INVALID_ARGUMENT', /retries of step 's'/)
  throwsPso(() => o.workflow('w', [{ name: 's', fn: () => 1, timeoutMs: 0 }]), 'PSO_INVALID_ARGUMENT', /timeoutMs of step 's' must be a positive/)
  throwsPso(() => o.workflow('w', [{ name: 's', fn: () => 1, priority: 'urgent' }]), 'PSO_INVALID_ARGUMENT', /unknown priority 'urgent'/)
  throwsPso(() => o.workflow('w', [{ name: 's', fn: () => 1, inputs: { x: 1 } }]), 'PSO_INVALID_ARGUMENT', /inputs\.x of step 's' must be a string/)
  throwsPso(() => o.workflow('w', [42]), 'PSO_INVALID_ARGUMENT', /steps\[0\] must be an object/)
  throwsPso(() => o.workflow('w', {}), 'PSO_INVALID_ARGUMENT', /steps must be an array/)
  throwsPso(() => o.register({ name: 'x', operations: { get: 1 } }), 'PSO_INVALID_ARGUMENT', /operations\.get of system spec 'x' must be a function/)
  throwsPso(() => o.register({ name: 'x', concurrency: 1.5 }), 'PSO_INVALID_ARGUMENT', /concurrency of system spec 'x'/)
  throwsPso(() => o.setOperation('ghost', 'get', () => 1), 'PSO_NOT_FOUND')
  throwsPso(() => o.setOperation('db', 'get', null), 'PSO_INVALID_ARGUMENT', /fn must be a function, got null/)
})

test('coordinateSystems checks its arguments', T, async (t) => {
  const o = make(t)
  const other = make(t)
  const wf = o.workflow('w', [{ name: 's', fn: () => 1 }])
  throwsPso(() => o.coordinateSystems({ name: 'w' }), 'PSO_INVALID_ARGUMENT', /workflow must be a Workflow/)
  throwsPso(() => o.coordinateSystems(Object.create(Workflow.prototype)), 'PSO_INVALID_ARGUMENT', /workflow must be a Workflow/)
  throwsPso(() => other.coordinateSystems(wf), 'PSO_INVALID_ARGUMENT', /built for another orchestrator/)
  throwsPso(() => o.coordinateSystems(wf, { deadline: 5 }), 'PSO_INVALID_ARGUMENT', /unknown key 'deadline' in run options/)
  throwsPso(() => o.coordinateSystems(wf, { deadlineMs: -1 }), 'PSO_INVALID_ARGUMENT', /deadlineMs must be a positive/)
  throwsPso(() => o.coordinateSystems(wf, { timing: 'yes' }), 'PSO_INVALID_ARGUMENT', /timing must be a boolean/)
  throwsPso(() => o.coordinateSystems(wf, { signal: new AbortController() }), 'PSO_INVALID_ARGUMENT', /signal must be an AbortSignal/)
  assert.throws(() => new Workflow(), 'Workflow objects come from workflow() and loadWorkflow*()')
  assert.throws(() => new Run(), 'Run objects come from coordinateSystems()')
})

test('timing: false records no times; results are plain data', T, async (t) => {
  const o = make(t)
  const wf = o.workflow('w', [{ name: 'a', fn: () => ({ n: 1 }) }, { name: 'b', fn: () => { throw new Error('x') } }])
  const r = await settle(o.coordinateSystems(wf, { timing: false }))
  for (const s of r.steps) {
    assert.deepEqual([s.queuedMs, s.ranMs, s.worker], [0, 0, null])
  }
  assert.equal(Object.getPrototypeOf(r), Object.prototype)
  assert.deepEqual(Object.keys(r).sort(), ['counts', 'elapsedMs', 'errors', 'id', 'ok', 'outputs', 'state', 'steps', 'workflow'])
  const copy = JSON.parse(JSON.stringify(r))
  assert.deepEqual(copy.outputs, { a: { n: 1 } })
  assert.deepEqual(copy.errors, { b: 'Error: x' })
  assert.equal(copy.steps.length, 2)
  r.outputs = 'replaced'
  assert.equal(r.outputs, 'replaced')
  // Each access sees the same (cached) object.
  assert.equal(r.steps, r.steps)
})

test('definitions from TOML and JSON, text or file; parse errors carry line and column', T, async (t) => {
  const o = make(t)
  o.register({ name: 'PBOS', operations: { build: () => 'artifact' } })
  o.register({ name: 'PSec', operations: { scan: (ctx) => `scanned ${ctx.inputs.artifact}` } })
  await o.activateAll()
  const toml = `
name = "release"

[[steps]]
name = "build"
system = "PBOS"
op = "build"
retries = 2

[[steps]]
name = "scan"
system = "PSec"
op = "scan"
inputs = { artifact = "build" }
when = "build"
timeout_ms = 5000
`
  const fromToml = o.loadWorkflowString(toml)
  assert.deepEqual([fromToml.name, fromToml.stepNames], ['release', ['build', 'scan']])
  const r = await settle(o.coordinateSystems(fromToml))
  assert.deepEqual(r.outputs, { build: 'artifact', scan: 'scanned artifact' })

  const json = JSON.stringify({ name: 'j', steps: [{ name: 'b', system: 'PBOS', op: 'build' }] })
  const fromJson = o.loadWorkflowString(json, 'json')
  assert.deepEqual((await settle(o.coordinateSystems(fromJson))).outputs, { b: 'artifact' })

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pso-node-wf-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  fs.writeFileSync(path.join(dir, 'release.toml'), toml)
  fs.writeFileSync(path.join(dir, 'j.json'), json)
  assert.equal(o.loadWorkflow(path.join(dir, 'release.toml')).name, 'release')
  assert.equal(o.loadWorkflow(path.join(dir, 'j.json')).name, 'j')

  let e = throwsPso(() => o.loadWorkflowString('name = "x"\n[[steps]]\nname = "a"\nsystem = "PBOS"\nop = "build"\nretrys = 1\n'), 'PSO_PARSE', /unknown field `retrys`/)
  assert.deepEqual([e.line, e.column, e.source], [6, 1, '<string>'])
  e = throwsPso(() => o.loadWorkflowString('{"name": "x",\n "steps": [}', 'json'), 'PSO_PARSE')
  assert.deepEqual([e.line, e.source], [2, '<string>'])
  fs.writeFileSync(path.join(dir, 'bad.toml'), 'name = \n')
  e = throwsPso(() => o.loadWorkflow(path.join(dir, 'bad.toml')), 'PSO_PARSE')
  assert.equal(e.source, path.join(dir, 'bad.toml'))
  assert.equal(e.line, 1)
  throwsPso(() => o.loadWorkflowString('name = "x"\n[[steps]]\nname = "a"\nsystem = "PBOS"\nop = "nope"\n'), 'PSO_NOT_FOUND', /step 'a' uses unknown operation 'nope'/)
  throwsPso(() => o.loadWorkflowString('x', 'yaml'), 'PSO_INVALID_ARGUMENT', /yaml/)
  e = throwsPso(() => o.loadWorkflow(path.join(dir, 'missing.toml')), 'PSO_IO', /cannot read workflow file/)
  assert.equal(e.path, path.join(dir, 'missing.toml'))
  throwsPso(() => o.loadWorkflow(path.join(dir, 'wf.yaml')), 'PSO_INVALID_ARGUMENT', /use a \.toml or \.json extension/)
})

test('registerMany declares operations; a step may start and await another run', T, async (t) => {
  const o = make(t, { workers: 3 })
  o.registerMany([
    { name: 'a', operations: { twice: (ctx) => ctx.input * 2 } },
    { name: 'b', requires: ['a'], concurrency: 1, operations: { plus: (ctx) => ctx.inputs.x + 1 } },
  ])
  await o.activateAll()
  const inner = o.workflow('inner', [{ name: 'double', system: 'a', op: 'twice' }])
  const outer = o.workflow('outer', [
    { name: 'nested', fn: async (ctx) => (await o.coordinateSystems(inner, { input: ctx.runInput }).result).outputs.double },
    { name: 'plus', system: 'b', op: 'plus', inputs: { x: 'nested' } },
  ])
  const r = await settle(o.coordinateSystems(outer, { input: 20 }))
  assert.deepEqual(r.outputs, { nested: 40, plus: 41 })
})

test('many concurrent runs of one workflow each get their own inputs and outputs', T, async (t) => {
  const o = make(t, { workers: 4 })
  const wf = o.workflow('many', [
    { name: 'a', fn: async (ctx) => { await sleep(ctx.runInput % 3); return ctx.runInput * 2 } },
    { name: 'b', fn: (ctx) => ctx.inputs.x + 1, inputs: { x: 'a' } },
    { name: 'c', fn: (ctx) => ctx.runInput, after: ['a'] },
  ])
  const runs = Array.from({ length: 60 }, (_, i) => o.coordinateSystems(wf, { input: i }))
  assert.equal(new Set(runs.map((r) => r.id)).size, 60)
  const results = await Promise.all(runs.map(settle))
  results.forEach((r, i) => {
    assert.equal(r.state, 'succeeded')
    assert.deepEqual(r.outputs, { a: i * 2, b: i * 2 + 1, c: i })
  })
})

test('close() with runs in flight: their results resolve as cancelled', T, async (t) => {
  const o = make(t, { workers: 2 })
  let started
  const running = new Promise((resolve) => (started = resolve))
  const wf = o.workflow('stuck', [
    { name: 'forever', fn: () => { started(); return new Promise(() => {}) } },
    { name: 'after', fn: () => 1, after: ['forever'] },
  ])
  const runs = [o.coordinateSystems(wf), o.coordinateSystems(wf)]
  await running
  const t0 = Date.now()
  o.close()
  assert.ok(Date.now() - t0 < 2000, 'close() does not wait for pending step Promises')
  for (const run of runs) {
    const r = await settle(run)
    assert.equal(r.state, 'cancelled')
    assert.equal(step(r, 'after').state, 'cancelled')
  }
  throwsPso(() => o.coordinateSystems(wf), 'PSO_CLOSED')
  throwsPso(() => o.workflow('w', []), 'PSO_CLOSED')
})

test('a step may close its own orchestrator', T, async (t) => {
  const o = make(t, { workers: 2 })
  const wf = o.workflow('self', [
    { name: 'closer', fn: () => { o.close(); return 'closed' } },
    { name: 'after', fn: () => 1, after: ['closer'] },
  ])
  const r = await settle(o.coordinateSystems(wf))
  assert.equal(r.state, 'cancelled')
  assert.equal(step(r, 'after').state, 'cancelled')
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

test('the process exits after close() with runs in flight (never-settling steps)', { timeout: 20_000 }, () => {
  const stdout = runChild(`
    const o = new Orchestrator({ workers: 2 })
    o.register({ name: 'db', operations: { hang: () => new Promise(() => {}) } })
    await o.activateAll()
    const wf = o.workflow('w', [
      { name: 'a', system: 'db', op: 'hang' },
      { name: 'b', fn: () => new Promise(() => {}) },
      { name: 'c', fn: () => 1, after: ['a'] },
    ])
    const runs = [o.coordinateSystems(wf), o.coordinateSystems(wf, { signal: new AbortController().signal })]
    await sleep(20)
    o.close()
    for (const run of runs) console.log((await run.result).state)
  `)
  assert.equal(stdout, 'cancelled\ncancelled\nfinished\n')
})

test('the process exits after runs finish, without close()', { timeout: 20_000 }, () => {
  const stdout = runChild(`
    const o = new Orchestrator({ workers: 2 })
    const wf = o.workflow('w', [{ name: 'a', fn: async () => { await sleep(5); return 1 } }, { name: 'b', fn: (c) => c.inputs.x + 1, inputs: { x: 'a' } }])
    const r = await o.coordinateSystems(wf).result
    console.log(r.state, r.outputs.b)
  `)
  assert.equal(stdout, 'succeeded 2\nfinished\n')
})

test('a run that is never awaited still ends, and the process exits', { timeout: 20_000 }, () => {
  const stdout = runChild(`
    const o = new Orchestrator({ workers: 2 })
    const wf = o.workflow('w', [{ name: 'a', timeoutMs: 50, fn: () => new Promise(() => {}) }])
    o.coordinateSystems(wf)
    o.coordinateSystems(wf, { deadlineMs: 30 })
  `)
  assert.equal(stdout, 'finished\n')
})

test('workflows run in a worker thread, which then ends cleanly', { timeout: 20_000 }, () => {
  const stdout = runChild(`
    const { Worker } = require('node:worker_threads')
    const code = \`
      const { parentPort } = require('node:worker_threads')
      const { Orchestrator } = require(${PKG})
      const o = new Orchestrator({ workers: 2 })
      const wf = o.workflow('w', [{ name: 'a', fn: async () => 21 }, { name: 'b', fn: (c) => c.inputs.x * 2, inputs: { x: 'a' } }])
      o.coordinateSystems(wf).result.then((r) => parentPort.postMessage(r.outputs.b))
      o.coordinateSystems(o.workflow('stuck', [{ name: 's', fn: () => new Promise(() => {}) }]))
    \`
    const w = new Worker(code, { eval: true })
    const got = await new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject) })
    console.log('got', got)
    await w.terminate()
  `)
  assert.equal(stdout, 'got 42\nfinished\n')
})
