'use strict'
// Node under stress (issue 7): many concurrent workflow runs on one
// orchestrator, which is then closed while runs, resource waits and pull
// receives are in flight. Pass: every run's Promise settles (finished runs
// as succeeded/failed, the rest as cancelled) with balanced counts; every
// in-flight allocateResources and recv() rejects with code PSO_CLOSED (the
// code pso-node uses for a closed orchestrator); calls after close throw
// PSO_CLOSED; and the process then exits on its own. The workload runs in a
// child process with a timeout, so a hang (a leaked handle, a Promise that
// never settles) fails the test instead of hanging `node --test`.

const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

const PKG = JSON.stringify(path.resolve(__dirname, '..'))
const ROUNDS = 3 // orchestrators, one after the other
const RUNS = 1000 // concurrent runs per orchestrator
const TIMEOUT_MS = 120_000 // a hang waits for good; the workload takes ~1-2 s

const CHILD = `
const { Orchestrator } = require(${PKG})
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const codeOf = async (p) => { try { await p; return 'resolved' } catch (e) { return e.code || String(e) } }
const throwsCode = (fn) => { try { fn(); return 'no throw' } catch (e) { return e.code || String(e) } }

async function round(r) {
  const o = new Orchestrator({ workers: 2 })
  o.register({ name: 'db', operations: { get: async (ctx) => { await sleep(ctx.runInput % 4); return ctx.runInput } } })
  o.register({ name: 'a' })
  o.register({ name: 'b' })
  await o.activateAll()
  o.setCapacity('cpu', 1)
  const held = await o.allocateResources('a', { cpu: 1 })
  const quick = o.workflow('quick', [
    { name: 'get', system: 'db', op: 'get' },
    { name: 'twice', fn: (ctx) => ctx.inputs.v * 2, inputs: { v: 'get' } },
    { name: 'maybe', fn: (ctx) => { if (ctx.runInput % 10 === 0) throw new Error('planned'); return 1 } },
  ])
  const stuck = o.workflow('stuck', [
    { name: 'get', system: 'db', op: 'get' },
    { name: 'hang', fn: () => new Promise(() => {}), after: ['get'] },
    { name: 'after', fn: () => 1, after: ['hang'] },
  ])
  const runs = []
  for (let i = 0; i < ${RUNS}; i++) {
    const stuckRun = i % 2 === 1
    const run = o.coordinateSystems(stuckRun ? stuck : quick, { input: i })
    runs.push({ stuckRun, i, result: run.result, done: false })
  }
  runs.forEach((x) => x.result.then(() => { x.done = true }, () => { x.done = true }))
  // Handlers are attached at once (codeOf), so a rejection is never unhandled.
  const waits = Array.from({ length: 5 }, () => codeOf(o.allocateResources('b', { cpu: 1 }, { waitMs: 60_000 })))
  const sub = o.hub.subscribe('nothing.>')
  const recvs = Array.from({ length: 3 }, () => codeOf(sub.recv()))
  // Close once every quick run finished: the stuck ones are certainly in flight.
  await Promise.all(runs.filter((x) => !x.stuckRun).map((x) => x.result))
  const doneBeforeClose = runs.filter((x) => x.done).length
  o.close()
  const out = { round: r, doneBeforeClose, states: {}, unbalanced: 0, wrongState: 0, rejections: {}, after: {} }
  for (const x of runs) {
    const res = await x.result
    out.states[res.state] = (out.states[res.state] || 0) + 1
    const c = res.counts
    const terminal = c.succeeded + c.failed + c.cancelled + c.timedOut + c.skipped
    if (c.unfinished !== 0 || terminal !== c.accepted || c.accepted !== 3) out.unbalanced++
    const want = x.stuckRun ? 'cancelled' : (x.i % 10 === 0 ? 'failed' : 'succeeded')
    if (res.state !== want) out.wrongState++
  }
  for (const p of [...waits, ...recvs]) {
    const code = await p
    out.rejections[code] = (out.rejections[code] || 0) + 1
  }
  out.after.register = throwsCode(() => o.register({ name: 'late' }))
  out.after.coordinateSystems = throwsCode(() => o.coordinateSystems(quick))
  out.after.workflow = throwsCode(() => o.workflow('w', []))
  out.after.allocateResources = await codeOf((async () => o.allocateResources('a', { cpu: 1 }))())
  void held
  return out
}

;(async () => {
  for (let r = 0; r < ${ROUNDS}; r++) console.log(JSON.stringify(await round(r)))
})().then(() => console.log('finished'), (e) => { console.error(e); process.exitCode = 1 })
`

test('many concurrent runs, then close() with runs and waits in flight: clear codes, and the process exits', { timeout: TIMEOUT_MS + 10_000 }, () => {
  const started = Date.now()
  const child = spawnSync(process.execPath, ['-e', CHILD], { encoding: 'utf8', timeout: TIMEOUT_MS })
  assert.equal(child.signal, null, `the child did not exit on its own within ${TIMEOUT_MS} ms (killed); stderr: ${child.stderr}`)
  assert.equal(child.status, 0, `exit code ${child.status}; stderr: ${child.stderr}`)
  const lines = child.stdout.trim().split('\n')
  assert.equal(lines.pop(), 'finished')
  assert.equal(lines.length, ROUNDS)
  console.log(`node stress report (${((Date.now() - started) / 1000).toFixed(1)} s, child process):`)
  for (const line of lines) {
    console.log(line)
    const out = JSON.parse(line)
    const half = RUNS / 2
    assert.equal(out.unbalanced, 0, line)
    assert.equal(out.wrongState, 0, line)
    assert.deepEqual(out.states, { succeeded: half - RUNS / 10, failed: RUNS / 10, cancelled: half }, line)
    assert.equal(out.doneBeforeClose, half, line)
    assert.deepEqual(out.rejections, { PSO_CLOSED: 8 }, line)
    assert.deepEqual(out.after, {
      register: 'PSO_CLOSED',
      coordinateSystems: 'PSO_CLOSED',
      workflow: 'PSO_CLOSED',
      allocateResources: 'PSO_CLOSED',
    }, line)
  }
})
