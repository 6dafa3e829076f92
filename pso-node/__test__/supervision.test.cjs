'use strict'
// Health and supervision: probes (sync, async, throwing, rejecting, wrong
// answers, never answering), watchdogs and check-ins, restarts with backoff,
// giving up (GaveUp), dependents stopped by a crash and brought back,
// flapping, status fields, argument errors, and one real-time smoke test.
// Everything but the smoke test runs on a VirtualClock: time moves only on
// `await clock.advance(ms)`, so nothing here depends on the machine's speed.

const test = require('node:test')
const assert = require('node:assert/strict')
const { Orchestrator, VirtualClock } = require('..')
const { make, sleep, rejectsPso, throwsPso } = require('./helpers.cjs')

const T = { timeout: 30_000 }
const S = 1000

/** An orchestrator on a new virtual clock. */
function virtual(t, extra = {}) {
  const clock = new VirtualClock()
  const o = make(t, { workers: 2, clock, alertIntervalMs: 0, ...extra })
  return { o, clock }
}

/** Supervision as pso-core's tests use it: 1 s doubling to 8 s, no jitter. */
const sup = (extra = {}) => ({
  policy: 'on_failure',
  backoffMs: S,
  maxBackoffMs: 8 * S,
  jitter: false,
  maxRestarts: 3,
  withinMs: 60 * S,
  resetAfterMs: 30 * S,
  ...extra,
})

test('VirtualClock: advance resolves and moves time; bad arguments are refused', T, async () => {
  const clock = new VirtualClock()
  assert.equal(clock.elapsedMs, 0)
  assert.equal(clock.pending, 0)
  const p = clock.advance(1500)
  assert.ok(p instanceof Promise, 'advance returns a Promise')
  assert.equal(await p, undefined)
  assert.equal(clock.elapsedMs, 1500)
  await clock.advance(0)
  assert.equal(clock.elapsedMs, 1500)
  // One advance at a time: one started from a probe the running advance
  // waits for would only end when that probe timed out.
  const first = clock.advance(10)
  await rejectsPso(clock.advance(10), 'PSO_BUSY', /another advance of this clock is running/)
  await first
  assert.equal(clock.elapsedMs, 1510)
  await rejectsPso(clock.advance(-1), 'PSO_INVALID_ARGUMENT', /ms must be a non-negative/)
  await rejectsPso(clock.advance('1'), 'PSO_INVALID_ARGUMENT', /ms must be a number/)
  throwsPso(() => new Orchestrator({ clock: {} }), 'PSO_INVALID_ARGUMENT', /options\.clock must be a VirtualClock/)
})

test('an unhealthy system is restarted after its backoff; status shows health and supervision', T, async (t) => {
  const { o, clock } = virtual(t)
  let healthy = true
  let starts = 0
  const seen = []
  o.register({
    name: 'db',
    onActivate: () => {
      starts++
    },
    health: {
      // Async probes are awaited.
      probe: async (system) => {
        seen.push(system)
        return healthy ? { status: 'healthy' } : { status: 'unhealthy', detail: 'connection refused' }
      },
      intervalMs: S,
      failuresBeforeUnhealthy: 2,
    },
    supervise: sup(),
  })
  assert.equal(o.status('db').health.probes, 0, 'no probe before it is Active')
  await o.activateSystem('db')
  await clock.advance(3 * S)
  let st = o.status('db')
  assert.equal(st.health.probes, 3)
  assert.equal(st.health.status, 'healthy')
  assert.deepEqual(seen, ['db', 'db', 'db'], 'the probe is called with the system name')
  assert.deepEqual(st.supervision, {
    policy: 'on_failure',
    strategy: 'one_for_one',
    restarts: 0,
    recentFailures: 0,
    failuresLeft: 4,
    nextAttemptInMs: null,
    attempt: 1,
    gaveUp: false,
  })
  healthy = false
  await clock.advance(S) // one failure: not yet unhealthy
  st = o.status('db')
  assert.equal(st.health.status, 'healthy')
  assert.equal(st.health.consecutiveFailures, 1)
  await clock.advance(S) // two: unhealthy, restart in 1 s
  st = o.status('db')
  assert.equal(st.health.status, 'unhealthy')
  assert.equal(st.health.detail, 'connection refused')
  assert.equal(st.supervision.nextAttemptInMs, S)
  healthy = true
  await clock.advance(S)
  assert.equal(starts, 2, 'restarted once')
  st = o.status('db')
  assert.equal(st.state, 'Active')
  assert.equal(st.health.status, 'healthy', 'starts over healthy')
  assert.equal(st.health.flapping, false)
  assert.deepEqual(
    [st.supervision.restarts, st.supervision.recentFailures, st.supervision.failuresLeft, st.supervision.nextAttemptInMs],
    [1, 1, 3, null],
  )
})

test('too many failures within the window give up (GaveUp) with growing backoff; activating by hand starts over', T, async (t) => {
  const { o, clock } = virtual(t)
  let starts = 0
  o.register({
    name: 'flaky',
    onActivate: () => {
      starts++
    },
    supervise: sup(),
  })
  await o.activateSystem('flaky')
  const delays = []
  for (let i = 0; i < 3; i++) {
    o.reportFailure('flaky', 'segfault')
    const st = o.status('flaky')
    assert.equal(st.state, 'Failed')
    assert.match(st.lastError ?? st.reason, /segfault/)
    delays.push(st.supervision.nextAttemptInMs)
    await clock.advance(st.supervision.nextAttemptInMs)
    assert.equal(o.status('flaky').state, 'Active')
  }
  assert.deepEqual(delays, [S, 2 * S, 4 * S], 'exponential backoff')
  o.reportFailure('flaky', 'segfault')
  await clock.advance(0)
  let st = o.status('flaky')
  assert.equal(st.state, 'GaveUp')
  assert.equal(st.supervision.gaveUp, true)
  assert.equal(st.supervision.failuresLeft, 0)
  assert.equal(starts, 4)
  assert.ok(st.history.some((h) => h.to === 'GaveUp'), 'the transition is recorded')
  assert.deepEqual(o.coordinationInsights().gaveUp, ['flaky'])
  await clock.advance(100 * S)
  assert.equal(o.status('flaky').state, 'GaveUp', 'it stays down')
  assert.match(o.whyInactive('flaky'), /supervisor stopped restarting it/)
  await o.activateSystem('flaky')
  assert.equal(o.status('flaky').state, 'Active')
})

test('a crash stops its dependents and its recovery brings them back', T, async (t) => {
  const { o, clock } = virtual(t)
  const starts = { db: 0, api: 0 }
  o.register({ name: 'db', onActivate: () => void starts.db++, supervise: sup() })
  o.register({ name: 'api', requires: ['db'], onActivate: async () => void starts.api++ })
  o.register({ name: 'web', requires: ['api'] })
  await o.activateSystem('web')
  o.reportFailure('db', 'out of memory')
  await clock.advance(0) // the supervisor stops what requires it
  assert.equal(o.status('db').state, 'Failed')
  assert.equal(o.status('api').state, 'Inactive')
  assert.equal(o.status('web').state, 'Inactive')
  await clock.advance(S) // restart
  await clock.advance(0) // and bring the dependents back
  for (const s of ['db', 'api', 'web']) assert.equal(o.status(s).state, 'Active', s)
  assert.deepEqual(starts, { db: 2, api: 2 })
})

test('a missed watchdog deadline is a failure; check-ins keep it alive', T, async (t) => {
  const { o, clock } = virtual(t)
  let starts = 0
  o.register({ name: 'worker', onActivate: () => void starts++, health: { watchdogMs: 5 * S }, supervise: sup() })
  await o.activateSystem('worker')
  for (let i = 0; i < 5; i++) {
    await clock.advance(4 * S)
    o.checkIn('worker')
  }
  assert.equal(starts, 1, 'check-ins kept it alive')
  assert.equal(o.status('worker').health.sinceCheckInMs, 0)
  await clock.advance(5 * S) // missed
  const h = o.status('worker').health
  assert.equal(h.status, 'unhealthy')
  assert.match(h.detail, /missed its watchdog deadline/)
  await clock.advance(S)
  assert.equal(starts, 2, 'restarted')
})

test('a probe that calls clock.advance gets PSO_BUSY instead of waiting for itself', T, async (t) => {
  const { o, clock } = virtual(t)
  let nested
  o.register({
    name: 'p',
    health: {
      probe: async () => {
        nested = await clock.advance(1).then(() => 'ok', (e) => e.code)
        return 'healthy'
      },
      intervalMs: S,
      timeoutMs: 10_000,
    },
  })
  await o.activateSystem('p')
  await clock.advance(S)
  assert.equal(nested, 'PSO_BUSY')
  assert.equal(o.status('p').health.probes, 1)
  assert.equal(o.status('p').health.status, 'healthy')
})

test('a probe that throws, rejects, answers wrongly or never answers is a failed probe with the reason', T, async (t) => {
  const { o, clock } = virtual(t)
  const cases = {
    throws: () => {
      throw new TypeError('probe exploded')
    },
    rejects: () => Promise.reject(new RangeError('no route')),
    wrong: () => 42,
    badStatus: () => ({ status: 'fine' }),
    string: () => 'degraded',
    hangs: () => new Promise(() => {}),
  }
  for (const [name, probe] of Object.entries(cases)) {
    // policy 'never': report only, so the system stays Active.
    o.register({
      name,
      health: { probe, intervalMs: S, timeoutMs: 50, failuresBeforeUnhealthy: 1 },
      supervise: { policy: 'never' },
    })
  }
  await o.activateAll()
  await clock.advance(S)
  const health = (s) => o.status(s).health
  assert.equal(health('throws').status, 'unhealthy')
  assert.match(health('throws').detail, /TypeError: probe exploded/)
  assert.match(health('rejects').detail, /RangeError: no route/)
  assert.match(health('wrong').detail, /the probe returned number; expected \{ status/)
  assert.match(health('badStatus').detail, /status 'fine'/)
  assert.equal(health('string').status, 'degraded', 'a bare status is a report')
  assert.equal(health('hangs').status, 'unhealthy')
  assert.match(health('hangs').detail, /no answer within 50ms|collected without settling/)
  for (const s of Object.keys(cases)) assert.equal(o.status(s).state, 'Active', `${s}: 'never' only reports`)
})

test('flapping is detected and ends after a quiet window', T, async (t) => {
  const { o, clock } = virtual(t, { flapThreshold: 4, flapWindowMs: 20 * S })
  let n = 0
  o.register({
    name: 'link',
    health: { probe: () => (n++ % 2 === 0 ? { status: 'unhealthy', detail: 'down' } : 'healthy'), intervalMs: S, failuresBeforeUnhealthy: 1 },
  })
  await o.activateSystem('link')
  await clock.advance(10 * S)
  assert.equal(o.status('link').health.flapping, true)
  assert.deepEqual(o.coordinationInsights().flapping, ['link'])
  o.setHealthCheck('link', { probe: () => ({ status: 'healthy' }), intervalMs: S })
  await clock.advance(40 * S)
  assert.equal(o.status('link').health.flapping, false)
})

test('setHealthCheck / setSupervision replace and remove; argument errors are PSO_ codes', T, async (t) => {
  const { o, clock } = virtual(t)
  o.register({ name: 'a' })
  await o.activateSystem('a')
  assert.equal(o.status('a').health, null)
  assert.equal(o.status('a').supervision, null)
  o.setHealthCheck('a', { probe: () => ({ status: 'degraded', detail: 'slow disk' }), intervalMs: S })
  o.setSupervision('a', { policy: 'always', strategy: 'rest_for_one' })
  await clock.advance(S)
  assert.deepEqual(
    { status: o.status('a').health.status, detail: o.status('a').health.detail },
    { status: 'degraded', detail: 'slow disk' },
  )
  assert.equal(o.status('a').supervision.policy, 'always')
  assert.equal(o.status('a').supervision.strategy, 'rest_for_one')
  o.setHealthCheck('a', null)
  o.setSupervision('a', null)
  assert.equal(o.status('a').health, null)
  assert.equal(o.status('a').supervision, null)

  throwsPso(() => o.setHealthCheck('ghost', { watchdogMs: S }), 'PSO_NOT_FOUND', /ghost/)
  throwsPso(() => o.setSupervision('ghost', {}), 'PSO_NOT_FOUND', /ghost/)
  throwsPso(() => o.checkIn('ghost'), 'PSO_NOT_FOUND', /ghost/)
  throwsPso(() => o.reportFailure('ghost', 'x'), 'PSO_NOT_FOUND', /ghost/)
  throwsPso(() => o.setHealthCheck('a', {}), 'PSO_INVALID_ARGUMENT', /needs a probe or a watchdogMs/)
  throwsPso(() => o.setHealthCheck('a', { probe: 'yes' }), 'PSO_INVALID_ARGUMENT', /probe of check must be a function, got string/)
  throwsPso(() => o.setHealthCheck('a', { watchdogMs: S, intervalMS: 5 }), 'PSO_INVALID_ARGUMENT', /unknown key 'intervalMS'/)
  throwsPso(() => o.setHealthCheck('a', { watchdogMs: S, failuresBeforeUnhealthy: 0 }), 'PSO_INVALID_ARGUMENT', /failuresBeforeUnhealthy/)
  throwsPso(() => o.setSupervision('a', { policy: 'sometimes' }), 'PSO_INVALID_ARGUMENT', /'never', 'on_failure' or 'always'/)
  throwsPso(() => o.setSupervision('a', { strategy: 'all' }), 'PSO_INVALID_ARGUMENT', /one_for_one/)
  throwsPso(() => o.setSupervision('a', { backoffMs: 10 * S, maxBackoffMs: S }), 'PSO_INVALID_ARGUMENT', /backoff base must not exceed/)
  throwsPso(
    () => o.register({ name: 'b', supervise: { policy: 'never', retries: 3 } }),
    'PSO_INVALID_ARGUMENT',
    /unknown key 'retries' in supervise of system spec 'b'/,
  )
  throwsPso(() => new Orchestrator({ flapThreshold: 0 }), 'PSO_INVALID_ARGUMENT', /flapThreshold/)
  throwsPso(() => new Orchestrator({ alertIntervalMs: -1 }), 'PSO_INVALID_ARGUMENT', /alertIntervalMs/)
  o.register({ name: 'idle' })
  throwsPso(() => o.reportFailure('idle', 'x'), 'PSO_INVALID_ARGUMENT', /not Active/)
  o.checkIn('idle') // not Active: nothing to do, but known
  o.close()
  throwsPso(() => o.checkIn('a'), 'PSO_CLOSED')
})

test('real time: probes run on workers, and close() does not wait for a probe stuck on the JS thread', T, async (t) => {
  const o = make(t, { workers: 2 })
  let calls = 0
  o.register({ name: 'live', health: { probe: () => (calls++, { status: 'healthy' }), intervalMs: 10 } })
  await o.activateAll()
  const end = Date.now() + 10_000
  while (calls < 2 && Date.now() < end) await sleep(5)
  assert.ok(calls >= 2, `probes ran (${calls})`)
  assert.ok(o.status('live').health.probes >= 1)
  // A probe that never answers, with a 10-minute timeout: it holds a worker.
  let asked = false
  const never = () => {
    asked = true
    return new Promise(() => {})
  }
  o.setHealthCheck('live', { probe: never, intervalMs: 10, timeoutMs: 600_000 })
  while (!asked && Date.now() < end) await sleep(5)
  assert.ok(asked, 'the stuck probe was called')
  const t0 = Date.now()
  o.close() // joins the workers: the waiting probes must give up
  assert.ok(Date.now() - t0 < 8000, `close took ${Date.now() - t0} ms`)
})
