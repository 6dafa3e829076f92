'use strict'
// Performance metrics: the snapshot as a plain camelCase object with
// toJson()/toPrometheus(), on/off, reset, and the metrics options. Counts
// only: nothing here depends on how fast the machine is.

const test = require('node:test')
const assert = require('node:assert/strict')
const { Orchestrator } = require('..')
const { make, throwsPso } = require('./helpers.cjs')

const T = { timeout: 30_000 }

test('performanceMetrics: per operation and system counts, JSON and Prometheus text; off and reset', T, async (t) => {
  const o = make(t, { workers: 2, latencySampleEvery: 1 })
  o.register({
    name: 'db',
    onActivate: () => {},
    operations: {
      read: () => 1,
      fail: () => {
        throw new Error('nope')
      },
    },
  })
  await o.activateAll()
  assert.equal(o.metricsEnabled, true)
  const wf = o.workflow('w', [{ name: 'r', system: 'db', op: 'read' }])
  for (let i = 0; i < 3; i++) await o.coordinateSystems(wf).result
  await o.coordinateSystems(o.workflow('f', [{ name: 'x', system: 'db', op: 'fail' }])).result

  const m = o.performanceMetrics()
  assert.equal(m.enabled, true)
  assert.equal(typeof m.since, 'string')
  assert.equal(m.latencySampleEvery, 1)
  const read = m.operations.find((x) => x.operation === 'db.read')
  assert.ok(read, JSON.stringify(m.operations))
  assert.equal(read.system, 'db')
  assert.equal(read.succeeded, 3)
  assert.equal(read.runTime.count, 3)
  assert.ok(read.runTime.max >= read.runTime.p50 && read.runTime.p50 >= 0)
  assert.equal(read.queueWait.count, 3)
  assert.equal(m.operations.find((x) => x.operation === 'db.fail').failed, 1)
  const db = m.systems.find((s) => s.system === 'db')
  assert.equal(db.transitions.active, 1)
  assert.equal(db.activateHandler.count, 1)
  assert.deepEqual(Object.keys(db.probes).sort(), ['degraded', 'failed', 'healthy', 'timedOut', 'unhealthy'])
  assert.deepEqual(Object.keys(m.hubShare).sort(), ['inHandlers', 'inHub', 'messages', 'share'])

  const json = JSON.parse(m.toJson())
  assert.equal(json.operations.find((x) => x.operation === 'db.read').run_time.count, 3, 'toJson is pso-core\'s snake_case JSON')
  const prom = m.toPrometheus()
  assert.equal(typeof prom, 'string')
  assert.match(prom, /# TYPE \S+ /)
  assert.match(prom, /db\.read|db_read|"db"/)

  o.setMetricsEnabled(false)
  assert.equal(o.metricsEnabled, false)
  await o.coordinateSystems(wf).result
  assert.equal(o.performanceMetrics().operations.find((x) => x.operation === 'db.read').succeeded, 3, 'nothing recorded while off')
  assert.equal(o.performanceMetrics().enabled, false)
  o.setMetricsEnabled(true)
  o.resetMetrics()
  assert.equal(o.performanceMetrics().operations.find((x) => x.operation === 'db.read'), undefined, 'reset forgets series')
  throwsPso(() => o.setMetricsEnabled('yes'), 'PSO_INVALID_ARGUMENT', /on must be a boolean/)
})

test('metrics options: off from the start, and checked values', T, (t) => {
  const o = make(t, { workers: 1, metrics: false, maxTopics: 8, utilizationIntervalMs: 500, utilizationIntervals: 10 })
  assert.equal(o.metricsEnabled, false)
  assert.equal(o.performanceMetrics().maxTopics, 8)
  throwsPso(() => new Orchestrator({ utilizationIntervalMs: 0 }), 'PSO_INVALID_ARGUMENT')
  throwsPso(() => new Orchestrator({ maxTopics: -1 }), 'PSO_INVALID_ARGUMENT', /maxTopics/)
  throwsPso(() => new Orchestrator({ metrics: 1 }), 'PSO_INVALID_ARGUMENT', /options\.metrics/)
  o.close()
  throwsPso(() => o.performanceMetrics(), 'PSO_CLOSED')
  throwsPso(() => o.resetMetrics(), 'PSO_CLOSED')
})
