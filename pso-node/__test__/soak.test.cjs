'use strict'
// Fault-injection soak from JS (issue 7): many JS workflow steps, 1% of them
// throwing, on one orchestrator, ending with a printed count report.
//
// * Steps run in workflows of RUN_STEPS independent steps, IN_FLIGHT runs at
//   once. Each step function counts its own calls. Pass: every step ran
//   exactly once (lost = 0, duplicated = 0), every step ended in the state its
//   behaviour implies (throwing -> failed with the error recorded, the rest
//   succeeded with their output), and every run's counts balance
//   (accepted = the sum of the terminal counts, unfinished = 0).
// * Memory: RSS (process.memoryUsage().rss) after a full GC, after the first
//   tenth of the runs, then after every later run; growth must stay under
//   64 MB. (Without the GC, V8's lazily collected garbage alone grew RSS by
//   63 MB over 100,000 steps; with it, 0.7 MB.)
//
// The full 100,000 steps take about 3 s, so CI runs all of them
// (PSO_SOAK_STEPS overrides the count):
//
//   cd pso-node && node --test __test__/soak.test.cjs
//
// Recorded run (2 shared cores under load, 3.3 s):
//
//   steps: accepted 100000 (ok 98992, throwing 1008) -> succeeded 98992, failed 1008,
//          other 0; lost 0, duplicated 0, wrong state 0, unbalanced runs 0
//   memory: RSS 67.1 MB after warm-up, peak 67.3 MB, growth 0.3 MB

const test = require('node:test')
const assert = require('node:assert/strict')
const v8 = require('node:v8')
const vm = require('node:vm')
const { Orchestrator } = require('..')

// A full GC before each RSS reading, without needing node --expose-gc.
v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc')

const RUN_STEPS = 500
const IN_FLIGHT = 4
const MAX_GROWTH = 64 * 1024 * 1024
const STEPS = Math.max(Number(process.env.PSO_SOAK_STEPS || 100000), RUN_STEPS)

/** A small deterministic PRNG (mulberry32), so a failure can be replayed. */
function rng(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function startRun(o, rand, r) {
  const throws = Array.from({ length: RUN_STEPS }, () => Math.floor(rand() * 100) === 0)
  const ran = new Uint32Array(RUN_STEPS)
  const steps = throws.map((bad, i) => {
    if (bad) r.throwing++
    else r.ok++
    return {
      name: `s${i}`,
      fn: () => {
        ran[i]++
        if (bad) throw new RangeError(`planned failure ${i}`)
        return i
      },
    }
  })
  const wf = o.workflow('soak', steps)
  return { run: o.coordinateSystems(wf, { timing: false }), throws, ran }
}

async function finishRun(live, r) {
  const res = await live.run.result
  const c = res.counts
  const terminal = c.succeeded + c.failed + c.cancelled + c.timedOut + c.skipped
  r.accepted += c.accepted
  r.succeeded += c.succeeded
  r.failed += c.failed
  r.other += c.cancelled + c.timedOut + c.skipped + c.unfinished
  if (c.accepted !== RUN_STEPS || terminal !== c.accepted || c.unfinished !== 0) r.unbalancedRuns++
  const byName = new Map(res.steps.map((s) => [s.name, s]))
  live.throws.forEach((bad, i) => {
    const n = live.ran[i]
    if (n === 0) r.lost++
    else if (n > 1) r.duplicated++
    const rec = byName.get(`s${i}`)
    const good = bad
      ? rec && rec.state === 'failed' && /RangeError/.test(rec.error) && rec.error.includes(`planned failure ${i}`)
      : rec && rec.state === 'succeeded' && res.outputs[`s${i}`] === i
    if (!good) r.wrongState++
  })
}

test(`fault-injection soak: ${STEPS} JS steps, 1% throwing`, { timeout: 600_000 }, async (t) => {
  const o = new Orchestrator()
  t.after(() => o.close())
  const started = Date.now()
  const rand = rng(0x5eed)
  const r = {
    accepted: 0, ok: 0, throwing: 0, succeeded: 0, failed: 0, other: 0,
    lost: 0, duplicated: 0, wrongState: 0, unbalancedRuns: 0,
  }
  const runs = Math.ceil(STEPS / RUN_STEPS)
  const warmUp = Math.max(Math.floor(runs / 10), 1)
  const rss = () => {
    gc()
    return process.memoryUsage().rss
  }
  let base = null
  let peak = 0
  const live = []
  for (let done = 0; done < runs; done++) {
    if (live.length === IN_FLIGHT) await finishRun(live.shift(), r)
    live.push(startRun(o, rand, r))
    if (done === warmUp) base = rss()
    else if (done > warmUp) peak = Math.max(peak, rss())
  }
  while (live.length) await finishRun(live.shift(), r)
  peak = Math.max(peak, rss())
  o.close()

  const growth = base === null ? 0 : Math.max(peak - base, 0)
  const mb = (b) => (b / 1048576).toFixed(1)
  console.log(`node soak report (${((Date.now() - started) / 1000).toFixed(1)} s)`)
  console.log(
    `steps: accepted ${r.accepted} (ok ${r.ok}, throwing ${r.throwing}) -> succeeded ${r.succeeded}, ` +
      `failed ${r.failed}, other ${r.other}; lost ${r.lost}, duplicated ${r.duplicated}, ` +
      `wrong state ${r.wrongState}, unbalanced runs ${r.unbalancedRuns}`,
  )
  console.log(`memory: RSS ${mb(base)} MB after warm-up, peak ${mb(peak)} MB, growth ${mb(growth)} MB`)

  assert.equal(r.accepted, runs * RUN_STEPS)
  assert.ok(r.throwing > 0, 'the seed planned no throwing step')
  assert.deepEqual([r.lost, r.duplicated], [0, 0])
  assert.deepEqual([r.wrongState, r.unbalancedRuns, r.other], [0, 0, 0])
  assert.equal(r.succeeded, r.ok)
  assert.equal(r.failed, r.throwing)
  assert.ok(growth < MAX_GROWTH, `RSS grew ${mb(growth)} MB after warm-up`)
})
