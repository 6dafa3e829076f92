'use strict'
// The hub (docs/API.md "Hub, coordination modes and state"): publish,
// callback and pull subscriptions, queue groups, overflow policies with drop
// counts, request/reply, direct channels and meshes, and that ending a
// subscription (or closing) lets the process exit. No assertion depends on
// timing beyond generous waits: the machine is heavily loaded.

const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { spawnSync } = require('node:child_process')
const { Hub, Message, Subscription } = require('..')
const { make, sleep, throwsPso, rejectsPso } = require('./helpers.cjs')

const T = { timeout: 60_000 }

/** `using`, which Node 20 lacks: disposes `x` when test `t` ends. */
function disposed(t, x) {
  t.after(() => x[Symbol.dispose]())
  return x
}

/** Waits until `cond()` holds (checking every 10 ms, up to `ms`). */
async function until(cond, ms = 10_000) {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await sleep(10)
  }
}

test('o.hub is a Hub; publish resolves with the number of queues reached', T, async (t) => {
  const o = make(t)
  assert.ok(o.hub instanceof Hub)
  assert.equal(await o.hub.publish('nobody.listens', 1), 0)
  const a = o.hub.subscribe('engine.*.done')
  const b = o.hub.subscribe('engine.>')
  t.after(() => { a.unsubscribe(); b.unsubscribe() })
  assert.equal(await o.hub.publish('engine.build.done', { ok: true }), 2)
  assert.equal(await o.hub.publish('engine.build.started'), 1)
  const m = await a.recv({ timeoutMs: 5000 })
  assert.ok(m instanceof Message)
  assert.equal(m.topic, 'engine.build.done')
  assert.deepEqual(m.payload, { ok: true })
  assert.equal(m.sender, null)
  assert.equal(m.isRequest, false)
  assert.equal((await b.recv()).topic, 'engine.build.done')
  const s = await b.recv()
  assert.equal(s.topic, 'engine.build.started')
  assert.equal(s.payload, null)
})

test('payloads round-trip as JS values; sender is carried', T, async (t) => {
  const o = make(t)
  const sub = disposed(t, o.hub.subscribe('data'))
  const payload = { n: 1, f: 1.5, s: 'x', l: [1, null, true], b: Buffer.from([1, 2]), big: 2n ** 60n }
  await o.hub.publish('data', payload, { sender: 'PAES' })
  const m = await sub.recv({ timeoutMs: 5000 })
  assert.deepEqual(m.payload, payload)
  assert.equal(m.sender, 'PAES')
})

test('bad topics, patterns, payloads and options are PSO_INVALID_ARGUMENT', T, async (t) => {
  const o = make(t)
  const e = await rejectsPso(o.hub.publish('a..b', 1), 'PSO_INVALID_ARGUMENT', /token/)
  assert.equal(e.token, '')
  await rejectsPso(o.hub.publish('a.*', 1), 'PSO_INVALID_ARGUMENT', /\*/)
  throwsPso(() => o.hub.subscribe('a.>.b'), 'PSO_INVALID_ARGUMENT', />/)
  throwsPso(() => o.hub.subscribe(42), 'PSO_INVALID_ARGUMENT', /pattern must be a string/)
  await rejectsPso(o.hub.publish('a', new Date()), 'PSO_INVALID_ARGUMENT', /Date/)
  await rejectsPso(o.hub.publish('a', () => 1), 'PSO_INVALID_ARGUMENT', /function/)
  throwsPso(() => o.hub.subscribe('a', { overflow: 'sometimes' }), 'PSO_INVALID_ARGUMENT', /overflow/)
  throwsPso(() => o.hub.subscribe('a', { capacity: 0 }), 'PSO_INVALID_ARGUMENT', /capacity/)
  throwsPso(() => o.hub.subscribe('a', { capcity: 3 }), 'PSO_INVALID_ARGUMENT', /unknown key 'capcity'/)
  throwsPso(() => o.hub.subscribe('a', { overflow: 'error', blockTimeoutMs: 5 }), 'PSO_INVALID_ARGUMENT', /block/)
  throwsPso(() => o.hub.subscribe('a', 'nope', {}), 'PSO_INVALID_ARGUMENT', /callback must be a function/)
  throwsPso(() => o.hub.subscribe('a', { onError: () => {} }), 'PSO_INVALID_ARGUMENT', /onError/)
})

test('callbacks run on the JS thread, one at a time, in publish order', T, async (t) => {
  const o = make(t)
  const got = []
  let running = 0
  let overlap = false
  const sub = o.hub.subscribe('seq', async (m) => {
    running++
    if (running > 1) overlap = true
    await sleep(1)
    got.push(m.payload)
    running--
  })
  t.after(() => sub.unsubscribe())
  assert.equal(sub.kind, 'callback')
  const N = 50
  for (let i = 0; i < N; i++) await o.hub.publish('seq', i)
  await until(() => got.length === N)
  assert.deepEqual(got, [...Array(N).keys()])
  assert.equal(overlap, false)
  const st = sub.status()
  assert.equal(st.kind, 'callback')
  assert.equal(st.delivered, N)
  assert.equal(st.errors, 0)
  await rejectsPso(sub.recv(), 'PSO_INVALID_ARGUMENT', /callback/)
  await rejectsPso(sub.next(), 'PSO_INVALID_ARGUMENT', /callback/)
})

test('publishes from JS keep their order even without awaiting each', T, async (t) => {
  const o = make(t)
  const got = []
  const sub = disposed(t, o.hub.subscribe('fast', (m) => { got.push(m.payload) }))
  const N = 200
  await Promise.all(Array.from({ length: N }, (_, i) => o.hub.publish('fast', i)))
  await until(() => got.length === N)
  assert.deepEqual(got, [...Array(N).keys()])
  assert.equal(sub.closed, false)
})

test('a throwing or rejecting callback is counted and reported; delivery goes on', T, async (t) => {
  const o = make(t)
  const seen = []
  const reported = []
  const sub = o.hub.subscribe(
    'flaky',
    async (m) => {
      seen.push(m.payload)
      if (m.payload === 1) throw new Error('sync-ish boom')
      if (m.payload === 2) return Promise.reject(new TypeError('async boom'))
    },
    { onError: (err, msg) => reported.push([err.message, msg.payload]) },
  )
  t.after(() => sub.unsubscribe())
  for (const i of [0, 1, 2, 3]) await o.hub.publish('flaky', i)
  await until(() => seen.length === 4 && reported.length === 2)
  assert.deepEqual(reported, [['sync-ish boom', 1], ['async boom', 2]])
  assert.equal(sub.status().errors, 2)
  const row = o.hub.subscriptions().find((s) => s.id === sub.id)
  assert.equal(row.errors, 2)
  assert.equal(row.kind, 'callback')
})

test('without onError, a callback error becomes a process warning (not a crash)', T, async (t) => {
  const o = make(t)
  const warnings = []
  const onWarning = (w) => { if (w.name === 'PsoCallbackError') warnings.push(w) }
  process.on('warning', onWarning)
  t.after(() => process.off('warning', onWarning))
  let calls = 0
  const sub = disposed(t, o.hub.subscribe('w', () => { calls++; throw new RangeError('nope') }))
  await o.hub.publish('w', 1)
  await o.hub.publish('w', 2)
  await until(() => warnings.length === 2)
  assert.equal(calls, 2)
  assert.equal(warnings[0].code, 'PSO_HANDLER_FAILED')
  assert.ok(warnings[0].cause instanceof RangeError)
  assert.match(warnings[0].message, /subscription 'w'.*'w'.*nope/)
  assert.equal(sub.status().errors, 2)
})

test('pull subscriptions: for await without polling, break unsubscribes', T, async (t) => {
  const o = make(t)
  const sub = o.hub.subscribe('jobs.>')
  assert.ok(sub instanceof Subscription)
  assert.equal(sub.kind, 'pull')
  const got = []
  const reader = (async () => {
    for await (const m of sub) {
      got.push(m.payload)
      if (got.length === 3) break
    }
  })()
  // The reader waits (no message yet) without blocking the event loop.
  await sleep(20)
  for (const i of [1, 2, 3, 4]) await o.hub.publish(`jobs.${i}`, i)
  await reader
  assert.deepEqual(got, [1, 2, 3])
  assert.equal(sub.closed, true)
  assert.equal(await o.hub.publish('jobs.5', 5), 0)
})

test('recv timeouts, and unsubscribe ends pending reads', T, async (t) => {
  const o = make(t)
  const sub = o.hub.subscribe('quiet')
  const e = await rejectsPso(sub.recv({ timeoutMs: 30 }), 'PSO_TIMEOUT')
  assert.match(e.message, /quiet/)
  await rejectsPso(sub.recv({ timeoutMs: 0 }), 'PSO_TIMEOUT')
  assert.equal(sub.tryRecv(), null)
  await o.hub.publish('quiet', 'now')
  assert.equal(sub.tryRecv().payload, 'now')
  const pending = sub.recv()
  const step = sub.next()
  assert.equal(sub.unsubscribe(), true)
  assert.equal(sub.unsubscribe(), false)
  await rejectsPso(pending, 'PSO_CLOSED')
  assert.deepEqual(await step, { value: undefined, done: true })
  await rejectsPso(sub.recv(), 'PSO_CLOSED')
  throwsPso(() => sub.tryRecv(), 'PSO_CLOSED')
})

test('queue groups: each message goes to one member', T, async (t) => {
  const o = make(t)
  const a = []
  const b = []
  const sa = disposed(t, o.hub.subscribe('work', (m) => { a.push(m.payload) }, { group: 'workers' }))
  const sb = disposed(t, o.hub.subscribe('work', (m) => { b.push(m.payload) }, { group: 'workers' }))
  const N = 40
  let delivered = 0
  for (let i = 0; i < N; i++) delivered += await o.hub.publish('work', i)
  assert.equal(delivered, N)
  await until(() => a.length + b.length === N)
  assert.deepEqual([...a, ...b].sort((x, y) => x - y), [...Array(N).keys()])
  assert.equal(o.hub.subscriptions().filter((s) => s.group === 'workers').length, 2)
  assert.ok(sa.status().delivered + sb.status().delivered === N)
})

test('overflow: dropNewest and dropOldest count drops; error rejects the publisher', T, async (t) => {
  const o = make(t)
  const newest = disposed(t, o.hub.subscribe('q', { capacity: 2, overflow: 'dropNewest', owner: 'PAES' }))
  const oldest = disposed(t, o.hub.subscribe('q', { capacity: 2, overflow: 'dropOldest' }))
  for (const i of [1, 2, 3, 4]) await o.hub.publish('q', i)
  assert.equal(newest.status().dropped, 2)
  assert.equal(newest.status().overflow, 'dropNewest')
  assert.equal(oldest.status().dropped, 2)
  assert.deepEqual([(await newest.recv()).payload, (await newest.recv()).payload], [1, 2])
  assert.deepEqual([(await oldest.recv()).payload, (await oldest.recv()).payload], [3, 4])

  const strict = disposed(t, o.hub.subscribe('e', { capacity: 1, overflow: 'error' }))
  assert.equal(await o.hub.publish('e', 1), 1)
  const err = await rejectsPso(o.hub.publish('e', 2), 'PSO_OVERFLOW')
  assert.equal(err.subscription, strict.id)
  assert.equal(err.capacity, 1)
  assert.equal(err.timedOut, false)
  assert.equal(strict.status().dropped, 1)
})

test('overflow: block waits off the event loop, then PSO_OVERFLOW after its timeout', T, async (t) => {
  const o = make(t)
  const sub = disposed(t, o.hub.subscribe('b', { capacity: 1, overflow: 'block', blockTimeoutMs: 300 }))
  assert.equal(sub.status().blockTimeoutMs, 300)
  await o.hub.publish('b', 1)
  // The queue is full: this publish waits on the publisher thread.
  let ticks = 0
  const timer = setInterval(() => ticks++, 5)
  const blocked = o.hub.publish('b', 2)
  const e = await rejectsPso(blocked, 'PSO_OVERFLOW')
  clearInterval(timer)
  assert.equal(e.timedOut, true)
  assert.ok(ticks > 0, 'the event loop ran while the publisher waited')
  // With room made in time, a blocked publish succeeds.
  const later = o.hub.publish('b', 3)
  await sleep(20)
  assert.equal((await sub.recv()).payload, 1)
  assert.equal(await later, 1)
  assert.equal((await sub.recv({ timeoutMs: 5000 })).payload, 3)
})

test('a drop raises an alert on pso.alert.<owner>.dropped', T, async (t) => {
  const o = make(t)
  const alerts = disposed(t, o.hub.subscribe('pso.alert.>'))
  const full = disposed(t, o.hub.subscribe('x', { capacity: 1, overflow: 'dropNewest', owner: 'PPO' }))
  await o.hub.publish('x', 1)
  await o.hub.publish('x', 2)
  const a = await alerts.recv({ timeoutMs: 5000 })
  assert.equal(a.topic, 'pso.alert.PPO.dropped')
  assert.equal(a.payload.owner, 'PPO')
  assert.equal(a.payload.dropped, 1)
  assert.equal(full.status().dropped, 1)
})

test('request/reply; NoResponders and Timeout are distinct codes', T, async (t) => {
  const o = make(t)
  disposed(t, o.hub.subscribe('svc.echo', (m) => {
    assert.equal(m.isRequest, true)
    assert.equal(m.reply({ echo: m.payload, from: m.sender }), true)
  }))
  const r = await o.hub.request('svc.echo', 'hi', { timeoutMs: 5000, sender: 'PBOS' })
  assert.deepEqual(r.payload, { echo: 'hi', from: 'PBOS' })

  const none = await rejectsPso(o.hub.request('svc.nobody', 1), 'PSO_NO_RESPONDERS')
  assert.equal(none.topic, 'svc.nobody')

  const silent = disposed(t, o.hub.subscribe('svc.silent'))
  const slow = await rejectsPso(o.hub.request('svc.silent', 1, { timeoutMs: 50 }), 'PSO_TIMEOUT')
  assert.equal(slow.topic, 'svc.silent')
  // The silent subscriber got the request but not replying is allowed.
  const m = await silent.recv({ timeoutMs: 5000 })
  assert.equal(m.isRequest, true)
  assert.equal(m.reply('late'), false)
})

test('a pull subscriber can answer requests; reply to a non-request fails', T, async (t) => {
  const o = make(t)
  const sub = disposed(t, o.hub.subscribe('math.double'))
  const answering = (async () => {
    const m = await sub.recv({ timeoutMs: 10_000 })
    m.reply(m.payload * 2)
  })()
  assert.equal((await o.hub.request('math.double', 21, { timeoutMs: 10_000 })).payload, 42)
  await answering
  await o.hub.publish('math.double', 1)
  const plain = await sub.recv()
  throwsPso(() => plain.reply(1), 'PSO_INVALID_ARGUMENT', /not a request/)
})

test('requestMany gathers replies up to max, or until the deadline', T, async (t) => {
  const o = make(t)
  const subs = [1, 2, 3].map((i) => o.hub.subscribe('census', (m) => { m.reply(i) }))
  t.after(() => subs.forEach((s) => s.unsubscribe()))
  const all = await o.hub.requestMany('census', null, { timeoutMs: 2000 })
  assert.deepEqual(all.map((m) => m.payload).sort(), [1, 2, 3])
  const two = await o.hub.requestMany('census', null, { timeoutMs: 5000, max: 2 })
  assert.equal(two.length, 2)
  await rejectsPso(o.hub.requestMany('nobody', null, { timeoutMs: 100 }), 'PSO_NO_RESPONDERS')
  await rejectsPso(o.hub.requestMany('census', null, {}), 'PSO_INVALID_ARGUMENT', /timeoutMs/)
})

test('a callback may await a request answered by another callback', T, async (t) => {
  const o = make(t)
  disposed(t, o.hub.subscribe('inner', (m) => { m.reply(m.payload + 1) }))
  const out = []
  disposed(t, o.hub.subscribe('outer', async (m) => {
    const r = await o.hub.request('inner', m.payload, { timeoutMs: 10_000 })
    out.push(r.payload)
  }))
  await o.hub.publish('outer', 1)
  await o.hub.publish('outer', 10)
  await until(() => out.length === 2)
  assert.deepEqual(out, [2, 11])
})

test('direct channels: endpoints send and receive without the router', T, async (t) => {
  const o = make(t)
  o.hub.openDirect('PAES', 'PPO', 'hot pair')
  const a = o.hub.endpoint('PAES', 'PPO')
  const b = o.hub.endpoint('PPO', 'PAES')
  assert.equal(a.system, 'PAES')
  assert.equal(a.peer, 'PPO')
  throwsPso(() => o.hub.endpoint('PAES', 'PPO'), 'PSO_ALREADY_EXISTS')
  throwsPso(() => o.hub.endpoint('PAES', 'PDT'), 'PSO_NOT_FOUND')
  throwsPso(() => o.hub.openDirect('PAES', 7), 'PSO_INVALID_ARGUMENT', /b must be a string/)
  throwsPso(() => o.hub.endpoint(null, 'PPO'), 'PSO_INVALID_ARGUMENT', /me must be a string/)
  throwsPso(() => o.hub.mesh('ab'), 'PSO_INVALID_ARGUMENT', /systems must be an array/)
  await rejectsPso(a.send(Symbol('x')), 'PSO_INVALID_ARGUMENT', /symbol/)
  const pending = b.recv({ timeoutMs: 10_000 })
  await a.send({ n: 1 })
  assert.deepEqual(await pending, { n: 1 })
  for (let i = 0; i < 100; i++) await b.send(i)
  for (let i = 0; i < 100; i++) assert.equal(await a.recv({ timeoutMs: 5000 }), i)
  await rejectsPso(a.recv({ timeoutMs: 20 }), 'PSO_TIMEOUT')
  assert.equal(a.tryRecv(), undefined)
  assert.equal(a.tryRecv('none'), 'none')
  assert.equal(b.trySend(null), true)
  assert.equal(a.tryRecv('none'), null)
  assert.equal(a.capacity, 1024)
  const st = o.coordinationStatus()
  assert.equal(st.mode, 'direct')
  const pair = st.directPairs.find((p) => p.a === 'PAES' && p.b === 'PPO')
  assert.equal(pair.origin, 'declared')
  assert.equal(pair.reason, 'hot pair')
  assert.equal(pair.sentAb, 1)
  assert.equal(pair.sentBa, 101)
  assert.ok(pair.since instanceof Date)
  const waiting = b.recv()
  a.close()
  await rejectsPso(waiting, 'PSO_CLOSED')
  await rejectsPso(b.send(1), 'PSO_CLOSED')
  assert.equal(b.closed, true)
})

test('a full direct channel: send waits off the event loop, or times out', T, async (t) => {
  const o = make(t, { workers: 2, hub: { directCapacity: 2 } })
  o.hub.openDirect('a', 'b')
  const a = disposed(t, o.hub.endpoint('a', 'b'))
  const b = disposed(t, o.hub.endpoint('b', 'a'))
  await a.send(1)
  await a.send(2)
  await rejectsPso(a.send(3, { timeoutMs: 30 }), 'PSO_TIMEOUT')
  assert.equal(a.trySend(3), false)
  const third = a.send(4)
  assert.equal(await b.recv(), 1)
  await third
  assert.deepEqual([await b.recv(), await b.recv()], [2, 4])
  // A send waiting for room holds its end; a receive on that end must not
  // block the event loop meanwhile (the peer's receive makes the room).
  await a.send(10)
  await a.send(11)
  const waiting = a.send(12)
  const own = a.recv({ timeoutMs: 50 }).then(() => 'value', (e) => e.code)
  assert.equal(await b.recv({ timeoutMs: 10_000 }), 10)
  await waiting
  assert.equal(await own, 'PSO_TIMEOUT')
  assert.deepEqual([await b.recv(), await b.recv()], [11, 12])
})

test('promote and demote are recorded with their reasons', T, async (t) => {
  const o = make(t)
  o.hub.promote('x', 'y', 'measured 50k msg/s')
  assert.equal(o.coordinationStatus().directPairs[0].origin, 'promoted')
  o.hub.demote('x', 'y', 'cooled down')
  const st = o.coordinationStatus()
  assert.equal(st.directPairs.length, 0)
  assert.equal(st.mode, 'hierarchical')
  const reasons = st.changes.map((c) => c.reason)
  assert.ok(reasons.includes('measured 50k msg/s'))
  assert.ok(reasons.includes('cooled down'))
  throwsPso(() => o.hub.demote('x', 'y'), 'PSO_NOT_FOUND')
})

test('meshes: a scope opens a channel per pair and closes them on dispose', T, async (t) => {
  const o = make(t)
  const m = o.hub.mesh(['a', 'b', 'c'])
  try {
    assert.deepEqual(m.systems, ['a', 'b', 'c'])
    const st = o.coordinationStatus()
    assert.equal(st.mode, 'mesh')
    assert.equal(st.meshes.length, 1)
    assert.equal(st.meshes[0].id, m.id)
    assert.equal(st.directPairs.length, 3)
    assert.ok(st.directPairs.every((p) => p.mode === 'mesh' && p.mesh === m.id))
    const ab = m.endpoint('a', 'b')
    const ba = m.endpoint('b', 'a')
    await ab.send('hello')
    assert.equal(await ba.recv({ timeoutMs: 5000 }), 'hello')
  } finally {
    m[Symbol.dispose]()
  }
  assert.equal(m.closed, true)
  const st = o.coordinationStatus()
  assert.equal(st.meshes.length, 0)
  assert.equal(st.directPairs.length, 0)
  assert.equal(st.mode, 'hierarchical')
  const m2 = o.hub.mesh(['p', 'q'])
  m2.close()
  m2.close()
  assert.equal(m2.closed, true)
  throwsPso(() => m2.endpoint('p', 'q'), 'PSO_CLOSED')
  throwsPso(() => o.hub.mesh(['solo']), 'PSO_INVALID_ARGUMENT')
})

test('close() ends subscriptions: pending reads finish, later calls are PSO_CLOSED', T, async () => {
  const { Orchestrator } = require('..')
  const o = new Orchestrator({ workers: 2 })
  const hub = o.hub
  const pull = hub.subscribe('a')
  const step = pull.next()
  let calls = 0
  hub.subscribe('b', () => { calls++ })
  o.close()
  assert.deepEqual(await step, { value: undefined, done: true })
  await rejectsPso(hub.publish('a', 1), 'PSO_CLOSED')
  throwsPso(() => hub.subscribe('a'), 'PSO_CLOSED')
  throwsPso(() => o.hub, 'PSO_CLOSED')
  assert.equal(calls, 0)
})

const PKG = JSON.stringify(path.resolve(__dirname, '..'))

function runChild(body) {
  const script = `
    const { Orchestrator } = require(${PKG})
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
    ;(async () => { ${body} })().then(
      () => console.log('finished'),
      (e) => { console.error(e); process.exitCode = 1 },
    )`
  const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20_000 })
  assert.equal(child.signal, null, `the child did not exit on its own (killed); stderr: ${child.stderr}`)
  assert.equal(child.status, 0, `exit code ${child.status}; stderr: ${child.stderr}`)
  return child.stdout
}

test('the process exits after unsubscribe, without close()', T, () => {
  const out = runChild(`
    const o = new Orchestrator({ workers: 2 })
    let n = 0
    const sub = o.hub.subscribe('t', () => { n++ })
    const pull = o.hub.subscribe('p')
    const reading = pull.recv()
    await o.hub.publish('t', 1)
    await o.hub.publish('p', 2)
    console.log((await reading).payload)
    while (n < 1) await sleep(5)
    sub.unsubscribe()
    pull.unsubscribe()
    console.log(n)
  `)
  assert.equal(out, '2\n1\nfinished\n')
})

test('the process exits after close() with live callback subscriptions and watches', T, () => {
  const out = runChild(`
    const o = new Orchestrator({ workers: 2 })
    o.hub.subscribe('t', () => {})
    o.hub.subscribe('u', async () => { await sleep(1) }, { group: 'g' })
    o.state.watch('k', () => {})
    o.hub.openDirect('a', 'b')
    const end = o.hub.endpoint('a', 'b')
    end.recv().catch(() => {})
    await o.hub.publish('t', 1)
    o.close()
  `)
  assert.equal(out, 'finished\n')
})

test('a live callback subscription keeps the process alive (until unsubscribed)', T, () => {
  const out = runChild(`
    const o = new Orchestrator({ workers: 2 })
    const sub = o.hub.subscribe('tick', (m) => {
      console.log('tick', m.payload)
      if (m.payload === 2) sub.unsubscribe()
    })
    // Published later, from a timer: only the subscription keeps the loop alive meanwhile.
    setTimeout(() => { o.hub.publish('tick', 1); o.hub.publish('tick', 2) }, 50).unref()
  `)
  assert.equal(out, 'finished\ntick 1\ntick 2\n')
})
