'use strict'
// Coordination intelligence: learnPatterns with sample counts, snapshot and
// restore carrying them, coordinationInsights, recommendations and
// optimizeCoordination (dry run, guardrails, apply, log, revert), and
// evolveCoordination keeping what helps and reverting what hurts. The
// evolution tests compare error rates of a workload that fails
// deterministically under one setting, so no assertion depends on timing.

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { make, sleep, rejectsPso, throwsPso } = require('./helpers.cjs')

const T = { timeout: 30_000 }

/** Two systems used together by workflow `req`; `api.serve` fails on input 3. */
async function pair(t) {
  const o = make(t)
  o.register({
    name: 'db',
    operations: {
      read: async () => {
        await sleep(2)
        return 1
      },
    },
  })
  o.register({
    name: 'api',
    operations: {
      serve: (ctx) => {
        if (ctx.runInput === 3) throw new Error('bad input')
        return 2
      },
    },
  })
  await o.activateAll()
  const wf = o.workflow('req', [
    { name: 'read', system: 'db', op: 'read' },
    { name: 'serve', system: 'api', op: 'serve', after: ['read'] },
  ])
  for (let i = 0; i < 4; i++) {
    const r = await o.coordinateSystems(wf, { input: i }).result
    assert.equal(r.state, i === 3 ? 'failed' : 'succeeded')
  }
  return { o, wf }
}

test('learnPatterns: durations, failure rates and co-activation with sample counts; a snapshot carries them', T, async (t) => {
  const { o } = await pair(t)
  const p = o.learnPatterns()
  assert.deepEqual(Object.keys(p).sort(), ['coActivation', 'edges', 'operations'])
  const read = p.operations.find((x) => x.key === 'db.read')
  assert.ok(read, JSON.stringify(p.operations))
  assert.equal(read.samples, 4)
  assert.ok(read.meanMs > 0 && read.stddevMs >= 0, JSON.stringify(read))
  const serve = p.operations.find((x) => x.key === 'api.serve')
  assert.deepEqual([serve.recentSteps, serve.recentFailures], [4, 1])
  assert.ok(Math.abs(serve.failureRate - 0.25) < 1e-9)
  const co = p.coActivation[0]
  assert.deepEqual([co.a, co.b], ['api', 'db'])
  assert.ok(co.together >= 4 && co.aCount >= co.together && co.bCount >= co.together, JSON.stringify(co))
  assert.ok(Array.isArray(p.edges))

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pso-node-intel-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'snap.json')
  const info = o.snapshot(file)
  assert.equal(info.path, file)
  assert.ok(info.bytes > 0 && info.entries >= 1 && info.revision >= 1, JSON.stringify(info))
  // A fresh host restores it and starts warm.
  const fresh = make(t, { workers: 1 })
  assert.equal(fresh.learnPatterns().operations.length, 0)
  const back = fresh.restore(file)
  assert.equal(back.entries, info.entries)
  const warm = fresh.learnPatterns().operations.find((x) => x.key === 'db.read')
  assert.ok(warm, 'the estimate came back')
  assert.equal(warm.samples, 4)
  assert.equal(warm.meanMs, read.meanMs)
  throwsPso(() => fresh.restore(path.join(dir, 'missing.json')), 'PSO_IO')
  throwsPso(() => fresh.snapshot(42), 'PSO_INVALID_ARGUMENT', /path must be a string/)
})

test('coordinationInsights: critical path, contributors and contention', T, async (t) => {
  const { o } = await pair(t)
  o.setCapacity('gpu', 1)
  const held = await o.allocateResources('db', { gpu: 1 })
  const waiting = o.allocateResources('api', { gpu: 1 })
  const i = o.coordinationInsights()
  assert.equal(i.runs, 4)
  const cp = i.criticalPaths.find((c) => c.workflow === 'req')
  assert.ok(cp, JSON.stringify(i.criticalPaths))
  assert.ok(cp.steps.length >= 1 && cp.steps.every((s) => typeof s.step === 'string' && s.ms >= 0), JSON.stringify(cp))
  assert.ok(cp.lengthMs >= 0 && cp.lengthMs <= cp.makespanMs + 1, JSON.stringify(cp))
  const read = i.contributors.find((c) => c.key === 'db.read')
  assert.ok(read && read.steps === 4 && read.workingMs > 0 && read.waitingMs >= 0, JSON.stringify(i.contributors))
  const gpu = i.contention.find((c) => c.dimension === 'gpu')
  assert.ok(gpu, JSON.stringify(i.contention))
  assert.equal(gpu.waiters, 1)
  assert.ok(Math.abs(gpu.utilization - 1) < 1e-9)
  assert.ok(gpu.longestWaitMs >= 0)
  assert.deepEqual([i.unhealthy, i.flapping, i.gaveUp, i.idleDirectPairs], [[], [], [], []])
  assert.deepEqual(i.hubLatency.share, { messages: 0, inHubMs: 0, inHandlersMs: 0, share: 0 }, 'no hub traffic')
  assert.deepEqual(i.hubLatency.slowestTopics, [])
  held.release()
  ;(await waiting).release()
})

test('optimizeCoordination: a dry run plans, guardrails hold back, apply changes and logs; revertChange undoes', T, async (t) => {
  const o = make(t)
  const calls = []
  o.register({
    name: 'idle',
    onActivate: () => void calls.push('activate'),
    onDeactivate: async () => {
      await sleep(1)
      calls.push('deactivate')
    },
  })
  await o.activateSystem('idle')
  await sleep(20)
  const loose = { minSamples: 0, minConfidence: 0, idleAfterMs: 1 }

  const recs = o.optimizationRecommendations()
  assert.ok(Array.isArray(recs))
  const dry = await o.optimizeCoordination(loose)
  assert.equal(dry.applied, false)
  assert.deepEqual(dry.changes, [])
  const rec = dry.actions.find((r) => r.action.kind === 'deactivate_idle')
  assert.ok(rec, JSON.stringify(dry))
  assert.deepEqual(rec.action, { kind: 'deactivate_idle', system: 'idle' })
  assert.equal(rec.target, 'idle')
  assert.match(rec.evidence, /unused for/)
  assert.ok(rec.expectedGain.length > 0)
  assert.ok(rec.confidence >= 0 && rec.confidence <= 1)
  assert.equal(typeof rec.samples, 'number')

  const strict = await o.optimizeCoordination({ minSamples: 1e9, idleAfterMs: 1 })
  assert.deepEqual(strict.actions, [])
  assert.ok(strict.skipped.length >= 1)
  assert.match(strict.skipped[0].why, /samples, fewer than 1000000000/)
  assert.equal(strict.skipped[0].recommendation.action.kind, 'deactivate_idle')
  assert.equal(o.status('idle').state, 'Active', 'nothing applied without apply')

  const plan = await o.optimizeCoordination({ apply: true, ...loose })
  assert.equal(plan.applied, true)
  const change = plan.changes.find((c) => c.action.kind === 'deactivate_idle')
  assert.ok(change, JSON.stringify(plan))
  assert.equal(change.error, null)
  assert.equal(change.reverted, false)
  assert.equal(o.status('idle').state, 'Inactive', 'the JS deactivate handler ran')
  assert.deepEqual(calls, ['activate', 'deactivate'])
  assert.deepEqual(o.coordinationLog().map((c) => c.id), plan.changes.map((c) => c.id))

  const undone = await o.revertChange(change.id)
  assert.equal(undone.id, change.id)
  assert.equal(undone.reverted, true)
  assert.equal(o.status('idle').state, 'Active')
  assert.deepEqual(calls, ['activate', 'deactivate', 'activate'])
  assert.equal(o.coordinationLog().find((c) => c.id === change.id).reverted, true)
  const again = await rejectsPso(o.revertChange(change.id), 'PSO_INVALID_ARGUMENT', /already reverted/)
  assert.equal(again.id, change.id)
  const missing = await rejectsPso(o.revertChange(9999), 'PSO_NOT_FOUND', /no coordination change 9999/)
  assert.equal(missing.id, 9999)
  await rejectsPso(o.optimizeCoordination({ aply: true }), 'PSO_INVALID_ARGUMENT', /unknown key 'aply'/)
  await rejectsPso(o.optimizeCoordination({ minConfidence: 2 }), 'PSO_INVALID_ARGUMENT', /minConfidence/)
})

test('evolveCoordination keeps a change that helps and reverts one that hurts; both are logged, the kept one is reversible', T, async (t) => {
  const o = make(t)
  o.register({ name: 'svc', operations: { work: () => 1 } })
  await o.activateAll()
  const wf = o.workflow('w', [{ name: 'a', system: 'svc', op: 'work' }])
  // The workload fails whenever svc has no concurrency limit (async, via a
  // real workflow run, so the JS thread must stay free while evolve waits).
  let calls = 0
  const workload = async () => {
    calls++
    const r = await o.coordinateSystems(wf).result
    assert.equal(r.state, 'succeeded')
    if (o.status('svc').concurrency === null) throw new Error('unlimited')
  }
  const helps = await o.evolveCoordination({ kind: 'concurrency_limit', system: 'svc', limit: 2 }, workload, {
    rounds: 3,
    metric: 'error_rate',
    margin: 0.5,
  })
  assert.equal(calls, 6, 'three rounds per arm')
  assert.equal(helps.kept, true, helps.reason)
  assert.equal(helps.baseline.rounds, 3)
  assert.equal(helps.baseline.errorRate, 1)
  assert.equal(helps.trial.errorRate, 0)
  assert.equal(helps.improvement, 1)
  assert.match(helps.change, /concurrency limit 2 for svc/)
  assert.ok(helps.trial.medianMs >= 0 && helps.trial.p99Ms >= helps.trial.medianMs)
  assert.equal(o.status('svc').concurrency, 2, 'kept')

  // Back to unlimited hurts: reverted. A sync throwing workload works too.
  const hurts = await o.evolveCoordination(
    { kind: 'concurrency_limit', system: 'svc', limit: null },
    () => {
      if (o.status('svc').concurrency === null) throw new Error('unlimited')
    },
    { rounds: 2, metric: 'error_rate' },
  )
  assert.equal(hurts.kept, false, hurts.reason)
  assert.ok(hurts.improvement < 0)
  assert.equal(o.status('svc').concurrency, 2, 'reverted')

  const log = o.evolutionLog()
  assert.deepEqual(log.map((e) => e.kept), [true, false])
  assert.deepEqual(log.map((e) => e.id), [helps.id, hurts.id])
  const kept = o.coordinationLog().find((c) => c.action.kind === 'set_concurrency_limit')
  assert.deepEqual(kept.action, { kind: 'set_concurrency_limit', system: 'svc', from: null, to: 2 })
  const undone = await o.revertChange(kept.id)
  assert.equal(undone.reverted, true)
  assert.equal(o.status('svc').concurrency, null)

  // A scheduling-policy trial runs and is logged, kept or not.
  const policy = await o.evolveCoordination({ kind: 'scheduling_policy', policy: 'fifo' }, () => o.coordinateSystems(wf).result, {
    rounds: 1,
  })
  assert.equal(typeof policy.kept, 'boolean')
  assert.equal(o.evolutionLog().length, 3)

  await rejectsPso(o.evolveCoordination({ kind: 'concurrency_limit', system: 'ghost', limit: 1 }, () => {}), 'PSO_NOT_FOUND', /ghost/)
  await rejectsPso(o.evolveCoordination({ kind: 'concurrency_limit', system: 'svc', limit: 0 }, () => {}), 'PSO_INVALID_ARGUMENT', /at least 1/)
  await rejectsPso(o.evolveCoordination({ kind: 'workers', n: 3 }, () => {}), 'PSO_INVALID_ARGUMENT', /change\.kind/)
  await rejectsPso(o.evolveCoordination({ kind: 'scheduling_policy', policy: 'lifo' }, () => {}), 'PSO_INVALID_ARGUMENT')
  await rejectsPso(o.evolveCoordination({ kind: 'scheduling_policy', policy: 'fifo' }, 'go'), 'PSO_INVALID_ARGUMENT', /workload must be a function/)
  await rejectsPso(o.evolveCoordination({ kind: 'scheduling_policy', policy: 'fifo' }, () => {}, { metric: 'speed' }),
    'PSO_INVALID_ARGUMENT',
    /options\.metric/,
  )
  o.close()
  throwsPso(() => o.learnPatterns(), 'PSO_CLOSED')
  await rejectsPso(o.evolveCoordination({ kind: 'scheduling_policy', policy: 'fifo' }, () => {}), 'PSO_CLOSED')
})
