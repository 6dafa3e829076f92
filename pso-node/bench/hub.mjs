// Hub throughput of pso-node (issue 5): messages/s from `hub.publish` to a
// JS callback, beside a plain in-language baseline (an array queue drained by
// an async loop woken through a Promise, the same shape of hand-off: one
// producer, one consumer on the event loop, in order).
//
//   cd pso-node && npm run build && node bench/hub.mjs
//   node bench/hub.mjs --messages 50000 --reps 5
//
// Variants:
//   publish -> callback   `await Promise.all` over N publishes, then wait
//                         until the callback saw all N
//   publish -> for await  the same into a pull subscription read with
//                         `for await`
//   plain JS queue        push N items into an array, an async consumer
//                         awaits a Promise when the queue is empty
// Prints the median (and range) of messages/s over --reps runs after one
// warm-up run, and the load average (the machine may be shared). Not run in
// CI.

import { createRequire } from 'node:module'
import os from 'node:os'

const { Orchestrator } = createRequire(import.meta.url)('..')

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1] : fallback
}
const N = Number(arg('messages', 20_000))
const REPS = Number(arg('reps', 5))

async function viaCallback(o) {
  let seen = 0
  let done
  const finished = new Promise((r) => { done = r })
  const sub = o.hub.subscribe('bench.cb', (m) => {
    seen += m.payload
    if (seen === N) done()
  }, { capacity: 4096, blockTimeoutMs: 60_000 })
  const t0 = process.hrtime.bigint()
  const sent = []
  for (let i = 0; i < N; i++) sent.push(o.hub.publish('bench.cb', 1))
  await Promise.all(sent)
  await finished
  const ns = Number(process.hrtime.bigint() - t0)
  sub.unsubscribe()
  return N / (ns / 1e9)
}

async function viaIterator(o) {
  const sub = o.hub.subscribe('bench.pull', { capacity: 4096, blockTimeoutMs: 60_000 })
  const t0 = process.hrtime.bigint()
  const reader = (async () => {
    let seen = 0
    for await (const m of sub) {
      seen += m.payload
      if (seen === N) break
    }
  })()
  const sent = []
  for (let i = 0; i < N; i++) sent.push(o.hub.publish('bench.pull', 1))
  await Promise.all(sent)
  await reader
  return N / (Number(process.hrtime.bigint() - t0) / 1e9)
}

async function plainQueue() {
  const q = []
  let wake = null
  let seen = 0
  const t0 = process.hrtime.bigint()
  const consumer = (async () => {
    while (seen < N) {
      if (q.length === 0) await new Promise((r) => { wake = r })
      while (q.length) seen += q.shift()
    }
  })()
  for (let i = 0; i < N; i++) {
    q.push(1)
    if (wake) { const w = wake; wake = null; w() }
    if (i % 1024 === 0) await Promise.resolve()
  }
  await consumer
  return N / (Number(process.hrtime.bigint() - t0) / 1e9)
}

function summary(xs) {
  const s = [...xs].sort((a, b) => a - b)
  const fmt = (x) => `${Math.round(x).toLocaleString('en-US')}`
  return `${fmt(s[Math.floor(s.length / 2)])} msg/s (${fmt(s[0])} - ${fmt(s[s.length - 1])})`
}

const o = new Orchestrator({ workers: 2 })
try {
  console.log(`${N} messages, ${REPS} reps, load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`)
  for (const [name, f] of [
    ['publish -> callback', () => viaCallback(o)],
    ['publish -> for await', () => viaIterator(o)],
    ['plain JS queue', () => plainQueue()],
  ]) {
    await f()
    const xs = []
    for (let r = 0; r < REPS; r++) xs.push(await f())
    console.log(`${name.padEnd(22)} ${summary(xs)}`)
  }
} finally {
  o.close()
}
