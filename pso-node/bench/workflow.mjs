// Workflow throughput of pso-node: 10,000 JS-function steps through PSO,
// beside plain-JS baselines that call the same functions in the same
// process: a topological loop (Kahn's algorithm, synchronous calls) and
// Promise.all over async wrappers that await their predecessors.
//
//   cd pso-node && npm run build && node bench/workflow.mjs
//   node bench/workflow.mjs --steps 20000 --reps 7 --workers 2,8
//
// Shapes: `independent` (no edges) and `wide DAG` (10 layers of steps/10;
// each step after the first layer takes the outputs of two steps of the
// layer above as named inputs). Prints the median (and range) of µs per step
// over --reps runs after one warm-up run, and the machine's load average,
// since the machine may be shared. Not run in CI.

import { createRequire } from 'node:module'
import os from 'node:os'

const { Orchestrator } = createRequire(import.meta.url)('..')

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1] : fallback
}
const N = Number(arg('steps', 10_000))
const REPS = Number(arg('reps', 5))
const WORKERS = String(arg('workers', `${os.availableParallelism()},8`))
  .split(',')
  .map(Number)

/** The step function every variant calls: sums its inputs, plus one. */
function work(ctx) {
  let s = 1
  for (const k in ctx.inputs) s += ctx.inputs[k]
  return s
}

/** `preds[i]`: the steps whose outputs step i takes (as inputs a and b). */
function shape(kind) {
  const preds = Array.from({ length: N }, () => [])
  if (kind === 'wide DAG') {
    const layers = 10
    const width = Math.ceil(N / layers)
    for (let i = width; i < N; i++) {
      const base = (Math.floor(i / width) - 1) * width
      const k = i % width
      preds[i] = [base + k, base + ((k * 7 + 3) % width)].filter((p, j, a) => a.indexOf(p) === j)
    }
  }
  return preds
}

const name = (i) => `s${i}`

function steps(preds) {
  return preds.map((ps, i) => {
    const spec = { name: name(i), fn: work }
    if (ps.length) spec.inputs = Object.fromEntries(ps.map((p, j) => [j ? 'b' : 'a', name(p)]))
    return spec
  })
}

/** Baseline 1: Kahn's algorithm, calling `work` synchronously. */
function topoLoop(preds) {
  const succ = Array.from({ length: N }, () => [])
  const left = preds.map((ps) => ps.length)
  preds.forEach((ps, i) => ps.forEach((p) => succ[p].push(i)))
  const out = new Array(N)
  const ready = []
  for (let i = 0; i < N; i++) if (left[i] === 0) ready.push(i)
  while (ready.length) {
    const i = ready.pop()
    const inputs = {}
    preds[i].forEach((p, j) => (inputs[j ? 'b' : 'a'] = out[p]))
    out[i] = work({ step: name(i), attempt: 1, inputs, input: inputs })
    for (const s of succ[i]) if (--left[s] === 0) ready.push(s)
  }
  return out
}

/** Baseline 2: Promise.all; each step awaits its predecessors. */
async function promiseAll(preds) {
  const p = new Array(N)
  for (let i = 0; i < N; i++) {
    const ps = preds[i]
    p[i] = Promise.all(ps.map((j) => p[j])).then(async (vals) => {
      const inputs = {}
      vals.forEach((v, j) => (inputs[j ? 'b' : 'a'] = v))
      return work({ step: name(i), attempt: 1, inputs, input: inputs })
    })
  }
  return Promise.all(p)
}

async function measure(label, fn) {
  await fn() // warm-up
  const us = []
  for (let r = 0; r < REPS; r++) {
    const t = process.hrtime.bigint()
    await fn()
    us.push(Number(process.hrtime.bigint() - t) / 1000 / N)
  }
  us.sort((a, b) => a - b)
  const med = us[Math.floor(us.length / 2)]
  console.log(
    `  ${label.padEnd(44)} ${med.toFixed(2).padStart(8)} µs/step  (range ${us[0].toFixed(2)}–${us[us.length - 1].toFixed(2)})`,
  )
  return med
}

console.log(
  `pso-node workflow bench: ${N} steps, ${REPS} reps (median), node ${process.version}, ` +
    `${os.availableParallelism()} cores, load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`,
)
for (const kind of ['independent', 'wide DAG']) {
  const preds = shape(kind)
  const edges = preds.reduce((a, ps) => a + ps.length, 0)
  console.log(`\n${kind} (${edges} edges)`)
  const expected = topoLoop(preds)
  await measure('JS topological loop (sync calls)', () => topoLoop(preds))
  await measure('JS Promise.all (async wrappers)', () => promiseAll(preds))
  for (const workers of WORKERS) {
    const o = new Orchestrator({ workers })
    try {
      const wf = o.workflow(kind, steps(preds))
      const check = await o.coordinateSystems(wf).result
      if (!check.ok || check.outputs[name(N - 1)] !== expected[N - 1]) {
        throw new Error(`PSO run went wrong: ${check.state} ${JSON.stringify(check.counts)}`)
      }
      await measure(`PSO, ${workers} workers, timing off`, async () => {
        const r = await o.coordinateSystems(wf, { timing: false }).result
        if (!r.ok) throw new Error(r.state)
      })
      await measure(`PSO, ${workers} workers, timing on`, async () => {
        const r = await o.coordinateSystems(wf).result
        if (!r.ok) throw new Error(r.state)
      })
      await measure(`PSO, ${workers} workers, + read every output`, async () => {
        const r = await o.coordinateSystems(wf, { timing: false }).result
        if (r.outputs[name(N - 1)] !== expected[N - 1]) throw new Error('wrong output')
      })
    } finally {
      o.close()
    }
  }
}
console.log(`\nload average after: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`)
