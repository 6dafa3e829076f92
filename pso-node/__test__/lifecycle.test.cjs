'use strict'
// Lifecycle verbs and JS handlers: order, failures, awaiting, timeouts,
// re-entrancy, concurrency, status and explanations.

const test = require('node:test')
const assert = require('node:assert/strict')
const { make, sleep, rejectsPso, throwsPso } = require('./helpers.cjs')

const T = { timeout: 10_000 }

/** Handlers that record `start:<name>` / `end:<name>` (with an async gap). */
function recorder(log, ms = 5) {
  return async (system) => {
    log.push(`start:${system}`)
    await sleep(ms)
    log.push(`end:${system}`)
  }
}

test('activateSystem runs dependencies first, level by level, and reports', T, async (t) => {
  const o = make(t)
  const log = []
  const h = recorder(log)
  o.register({ name: 'store', onActivate: h })
  o.register({ name: 'cache', onActivate: h })
  o.register({ name: 'index', requires: ['store'], wants: ['cache'], onActivate: h })
  o.register({ name: 'search', requires: ['index'], onActivate: h })
  o.register({ name: 'unrelated', onActivate: h })

  const plan = o.plan('search')
  assert.equal(plan.target, 'search')
  assert.deepEqual(plan.levels.map((l) => [...l].sort()), [['cache', 'store'], ['index'], ['search']])
  assert.deepEqual(plan.alreadyActive, [])
  const report = await o.activateSystem('search')
  assert.equal(report.target, 'search')
  assert.equal(report.action, 'activate')
  assert.deepEqual(report.activated, plan.levels.flat())
  assert.deepEqual(report.failures, [])
  assert.deepEqual(
    report.outcomes.map((x) => [x.system, x.outcome, x.level, x.error]).sort(),
    [
      ['cache', 'activated', 0, null],
      ['index', 'activated', 1, null],
      ['search', 'activated', 2, null],
      ['store', 'activated', 0, null],
    ],
  )
  for (const x of report.outcomes) {
    assert.ok(x.ranMs >= 4, `${x.system} ran ${x.ranMs} ms (handlers sleep 5 ms)`)
    assert.ok(x.queuedMs >= 0)
  }
  assert.ok(report.elapsedMs >= 15 && report.elapsedMs < 5000, `elapsed ${report.elapsedMs}`)
  // Each system starts only after everything it follows has ended.
  const at = (e) => log.indexOf(e)
  assert.ok(at('start:index') > at('end:store') && at('start:index') > at('end:cache'))
  assert.ok(at('start:search') > at('end:index'))
  assert.ok(!log.includes('start:unrelated'))

  const s = o.status('search')
  assert.equal(s.state, 'Active')
  assert.ok(s.since instanceof Date)
  assert.ok(Math.abs(Date.now() - s.since.getTime()) < 60_000)
  assert.deepEqual(s.history.map((h) => [h.from, h.to]), [['Registered', 'Activating'], ['Activating', 'Active']])
  assert.ok(s.history.every((h) => h.at instanceof Date))
  assert.equal(o.status('unrelated').state, 'Registered')
  assert.match(o.whyInactive('unrelated'), /unrelated is Registered: it has not been activated yet/)
  assert.match(o.whyInactive('search'), /^search is Active/)
})

test('activation is idempotent', T, async (t) => {
  const o = make(t)
  let calls = 0
  o.register({ name: 'a', onActivate: () => { calls += 1 } })
  o.register({ name: 'b', requires: ['a'] })
  await o.activateSystem('b')
  const again = await o.activateSystem('b')
  assert.deepEqual(again.outcomes.map((x) => [x.system, x.outcome]), [['b', 'already_active']])
  assert.deepEqual(again.activated, [])
  assert.equal(calls, 1)
  const plan = o.plan('b')
  assert.deepEqual(plan.levels, [])
  assert.deepEqual(plan.alreadyActive, ['b'])
})

test('a throwing requires-dependency blocks what requires it, with the chain and the thrown value', T, async (t) => {
  const o = make(t)
  const boom = new RangeError('disk on fire')
  let ranApi = false
  o.register({ name: 'db', onActivate: () => { throw boom } })
  o.register({ name: 'api', requires: ['db'], onActivate: () => { ranApi = true } })
  o.register({ name: 'web', requires: ['api'] })

  const e = await rejectsPso(o.activateSystem('web'), 'PSO_HANDLER_FAILED')
  assert.equal(e.message, 'cannot activate web: web requires api, api requires db, which failed: RangeError: disk on fire')
  assert.equal(e.target, 'web')
  assert.deepEqual(e.chain, ['web', 'api', 'db'])
  assert.equal(e.cause, boom, 'err.cause is the very value the handler threw')
  assert.deepEqual(e.report.outcomes.map((x) => [x.system, x.outcome]), [
    ['db', 'failed'], ['api', 'blocked'], ['web', 'blocked'],
  ])
  assert.equal(e.report.outcomes[0].error, 'RangeError: disk on fire')
  assert.match(e.report.outcomes[2].error, /web requires api, api requires db, which failed: RangeError: disk on fire/)
  assert.deepEqual(e.report.failures.map((x) => x.system), ['db', 'api', 'web'])
  assert.equal(ranApi, false)

  const db = o.status('db')
  assert.equal(db.state, 'Failed')
  assert.equal(db.lastError, 'activate handler failed: RangeError: disk on fire')
  assert.equal(o.status('api').state, 'Registered')
  assert.match(o.whyInactive('web'), /^web is Registered: it requires api, which requires db, which Failed at .* with 'activate handler failed: RangeError: disk on fire'/)
})

test('a failing wants-dependency does not block', T, async (t) => {
  const o = make(t)
  o.register({ name: 'metrics', onActivate: async () => { throw new Error('no metrics') } })
  o.register({ name: 'app', wants: ['metrics'] })
  const r = await o.activateSystem('app')
  assert.deepEqual(r.outcomes.map((x) => [x.system, x.outcome]), [['metrics', 'failed'], ['app', 'activated']])
  assert.deepEqual(r.failures.map((x) => x.system), ['metrics'])
  assert.equal(o.status('app').state, 'Active')
  assert.equal(o.status('metrics').state, 'Failed')
})

test('a rejected Promise fails the system; the rejection value is the cause', T, async (t) => {
  const o = make(t)
  class CustomError extends Error {
    constructor(message) { super(message); this.name = 'CustomError' }
  }
  const err = new CustomError('async nope')
  o.register({ name: 'a', onActivate: async () => { await sleep(5); throw err } })
  o.register({ name: 'b', onActivate: () => Promise.reject('plain string') })
  o.register({ name: 'c', onActivate: () => { throw 42 } })

  const ea = await rejectsPso(o.activateSystem('a'), 'PSO_HANDLER_FAILED', /CustomError: async nope/)
  assert.equal(ea.cause, err)
  assert.deepEqual(ea.chain, ['a'])
  const eb = await rejectsPso(o.activateSystem('b'), 'PSO_HANDLER_FAILED', /string: plain string/)
  assert.equal(eb.cause, 'plain string')
  const ec = await rejectsPso(o.activateSystem('c'), 'PSO_HANDLER_FAILED', /number: 42/)
  assert.equal(ec.cause, 42)
  assert.equal(o.status('c').state, 'Failed')
})

test('a failed system can be activated again', T, async (t) => {
  const o = make(t)
  let fail = true
  o.register({ name: 'flaky', onActivate: () => { if (fail) throw new Error('first time') } })
  await rejectsPso(o.activateSystem('flaky'), 'PSO_HANDLER_FAILED')
  fail = false
  const r = await o.activateSystem('flaky')
  assert.deepEqual(r.activated, ['flaky'])
  assert.equal(o.status('flaky').state, 'Active')
})

test('async handlers are awaited before dependents start', T, async (t) => {
  const o = make(t)
  let ready = false
  o.register({ name: 'slow', onActivate: async () => { await sleep(60); ready = true } })
  o.register({ name: 'fast', requires: ['slow'], onActivate: () => { assert.ok(ready, 'slow finished first') } })
  const r = await o.activateSystem('fast')
  assert.deepEqual(r.activated, ['slow', 'fast'])
  assert.ok(r.outcomes[0].ranMs >= 55, `slow ran ${r.outcomes[0].ranMs} ms`)
})

test('a handler that never settles times out (timed_out) and frees its worker', T, async (t) => {
  const o = make(t, { workers: 1 })
  o.register({ name: 'stuck', timeoutMs: 100, onActivate: () => new Promise(() => {}) })
  let lateSettled = false
  o.register({
    name: 'late',
    timeoutMs: 50,
    onActivate: async () => { await sleep(200); lateSettled = true },
  })
  o.register({ name: 'next', onActivate: () => {} })

  const started = Date.now()
  const e = await rejectsPso(o.activateSystem('stuck'), 'PSO_HANDLER_FAILED', /handler timed out after 100ms/)
  assert.ok(Date.now() - started < 3000)
  assert.deepEqual(e.report.outcomes.map((x) => [x.system, x.outcome]), [['stuck', 'timed_out']])
  assert.equal(e.cause, undefined)
  assert.equal(o.status('stuck').state, 'Failed')
  assert.match(o.status('stuck').lastError, /timed out after 100ms/)

  // The only worker is free again.
  assert.deepEqual((await o.activateSystem('next')).activated, ['next'])

  // A late result is ignored: the system stays Failed.
  const el = await rejectsPso(o.activateSystem('late'), 'PSO_HANDLER_FAILED')
  assert.equal(el.report.outcomes[0].outcome, 'timed_out')
  await sleep(300)
  assert.equal(lateSettled, true)
  assert.equal(o.status('late').state, 'Failed')
})

test('the orchestrator-wide transition timeout applies too', T, async (t) => {
  const o = make(t, { workers: 1, transitionTimeoutMs: 80 })
  o.register({ name: 'x', onActivate: () => new Promise(() => {}) })
  const e = await rejectsPso(o.activateSystem('x'), 'PSO_HANDLER_FAILED', /timed out after 80ms/)
  assert.equal(e.report.outcomes[0].outcome, 'timed_out')
})

test('deactivation stops dependents first, in reverse order', T, async (t) => {
  const o = make(t)
  const log = []
  for (const [name, requires] of [['db', []], ['api', ['db']], ['web', ['api']], ['cron', ['db']]]) {
    o.register({
      name,
      requires,
      onActivate: (s) => { log.push(`up:${s}`) },
      onDeactivate: async (s) => { await sleep(2); log.push(`down:${s}`) },
    })
  }
  await o.activateAll()
  log.length = 0
  const r = await o.deactivateSystem('api')
  assert.equal(r.action, 'deactivate')
  assert.deepEqual(r.deactivated, ['web', 'api'])
  assert.deepEqual(log, ['down:web', 'down:api'])
  assert.equal(o.status('db').state, 'Active')
  assert.equal(o.status('api').state, 'Inactive')

  const noop = await o.deactivateSystem('api')
  assert.deepEqual(noop.outcomes.map((x) => x.outcome), ['not_active'])

  log.length = 0
  const all = await o.deactivateAll()
  assert.equal(all.target, '*')
  assert.deepEqual(new Set(all.deactivated), new Set(['db', 'cron']))
  assert.deepEqual(log.at(-1), 'down:db', 'db goes last: cron requires it')
  assert.ok(o.systemStatus().every((s) => s.state === 'Inactive'))
  assert.match(o.whyInactive('db'), /^db is Inactive since/)
})

test('activateAll and a failing deactivate handler', T, async (t) => {
  const o = make(t)
  const oops = new Error('cannot stop')
  o.register({ name: 'a', onDeactivate: () => { throw oops } })
  o.register({ name: 'b', requires: ['a'] })
  o.register({ name: 'c', onActivate: () => { throw new TypeError('bad c') } })

  const e = await rejectsPso(o.activateAll(), 'PSO_HANDLER_FAILED', /TypeError: bad c/)
  assert.equal(e.target, '*')
  assert.deepEqual(e.chain, ['c'])
  assert.deepEqual(new Set(e.report.activated), new Set(['a', 'b']))

  const d = await rejectsPso(o.deactivateSystem('a'), 'PSO_HANDLER_FAILED', /deactivating a failed: Error: cannot stop/)
  assert.equal(d.cause, oops)
  assert.deepEqual(d.chain, ['a'])
  assert.equal(d.target, 'a')
  assert.deepEqual(d.report.outcomes.map((x) => [x.system, x.outcome]), [['b', 'deactivated'], ['a', 'failed']])
  assert.equal(o.status('a').state, 'Failed')
})

test('a lifecycle call from inside a handler gets PSO_BUSY, not a deadlock', T, async (t) => {
  const o = make(t)
  const seen = []
  o.register({ name: 'other' })
  o.register({
    name: 'sync',
    onActivate: () => {
      // Reads are fine inside a handler.
      seen.push(o.status('sync').state)
      // The returned Promise rejects: handled here, so the handler succeeds.
      o.activateSystem('other').catch((e) => seen.push(e.code))
    },
  })
  o.register({
    name: 'async',
    onActivate: async () => {
      await sleep(5)
      await o.deactivateAll() // after an await: still inside the handler
    },
  })
  o.register({ name: 'nested', onActivate: () => Promise.resolve().then(() => o.activateAll()) })

  const started = Date.now()
  await o.activateSystem('sync')
  await sleep(10)
  assert.deepEqual(seen, ['Activating', 'PSO_BUSY'])

  const e = await rejectsPso(o.activateSystem('async'), 'PSO_HANDLER_FAILED', /deactivate_all called from inside a lifecycle handler/)
  assert.equal(e.cause.code, 'PSO_BUSY')
  assert.equal(e.cause.kind, 'BUSY')
  const n = await rejectsPso(o.activateSystem('nested'), 'PSO_HANDLER_FAILED', /activate_all called from inside a lifecycle handler/)
  assert.equal(n.cause.code, 'PSO_BUSY')
  assert.ok(Date.now() - started < 2000, 'no call waited for a timeout')

  // Outside handlers, the same calls work.
  assert.deepEqual((await o.activateSystem('other')).outcomes[0].outcome, 'activated')
  // As in pso-core, a handler may drive another orchestrator.
  const o2 = make(t)
  o2.register({ name: 'x', onActivate: () => o.deactivateSystem('other') })
  assert.deepEqual((await o2.activateSystem('x')).activated, ['x'])
  assert.equal(o.status('other').state, 'Inactive')
})

test('work a handler scheduled may make lifecycle calls once the handler settled', T, async (t) => {
  const o = make(t)
  const results = []
  let later
  o.register({ name: 'worker' })
  o.register({
    name: 'scheduler',
    onActivate: async () => {
      // Still inside the handler: refused.
      setTimeout(() => o.activateSystem('worker').catch((e) => results.push(e.code)), 0)
      await sleep(20)
      // Runs after the handler settled: allowed (a health check, say).
      later = new Promise((resolve) => {
        setTimeout(() => o.activateSystem('worker').then((r) => resolve(r.activated)), 30)
      })
    },
  })
  await o.activateSystem('scheduler')
  assert.deepEqual(results, ['PSO_BUSY'])
  assert.deepEqual(await later, ['worker'])
})

test('many concurrent lifecycle calls all settle', T, async (t) => {
  const o = make(t, { workers: 2 })
  const names = Array.from({ length: 30 }, (_, i) => `s${i}`)
  let running = 0
  let maxRunning = 0
  for (const [i, name] of names.entries()) {
    o.register({
      name,
      requires: i > 0 && i % 3 === 0 ? [names[i - 1]] : [],
      onActivate: async () => {
        running += 1
        maxRunning = Math.max(maxRunning, running)
        await sleep(1)
        running -= 1
      },
    })
  }
  const calls = [...names, ...names].map((n) => o.activateSystem(n))
  const reports = await Promise.all(calls)
  assert.equal(reports.length, 60)
  assert.ok(o.systemStatus().every((s) => s.state === 'Active'))
  const activated = reports.flatMap((r) => r.activated)
  assert.deepEqual([...activated].sort(), [...names].sort(), 'each system activated exactly once')
  assert.ok(maxRunning <= 2, `at most 2 handlers at once with 2 workers (saw ${maxRunning})`)
  const down = await Promise.all(names.map((n) => o.deactivateSystem(n)))
  assert.deepEqual(down.flatMap((r) => r.deactivated).sort(), [...names].sort())
})

test('setHandlers replaces the handlers of a loaded system', T, async (t) => {
  const o = make(t)
  o.loadTopologyString('[[systems]]\nname = "svc"\n')
  assert.equal(o.status('svc').hasActivateHandler, false)
  const calls = []
  o.setHandlers('svc', { onActivate: (s) => { calls.push(`up:${s}`) }, onDeactivate: (s) => { calls.push(`down:${s}`) } })
  assert.equal(o.status('svc').hasActivateHandler, true)
  assert.equal(o.status('svc').hasDeactivateHandler, true)
  await o.activateSystem('svc')
  await o.deactivateSystem('svc')
  assert.deepEqual(calls, ['up:svc', 'down:svc'])
  o.setHandlers('svc')
  assert.equal(o.status('svc').hasActivateHandler, false)
  throwsPso(() => o.setHandlers('svc', { onActivate: 1 }), 'PSO_INVALID_ARGUMENT')
})

test('close() during a running activation: the call settles, later calls fail', T, async (t) => {
  const o = make(t, { workers: 1 })
  let finished = false
  o.register({ name: 'slow', onActivate: async () => { await sleep(100); finished = true } })
  const pending = o.activateSystem('slow')
  await sleep(20) // the handler is running now
  o.close()
  await rejectsPso(o.activateSystem('slow'), 'PSO_CLOSED')
  const report = await pending
  assert.deepEqual(report.activated, ['slow'])
  assert.equal(finished, true)
})
