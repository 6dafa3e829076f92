// Compiled with usage.ts by types.test.cjs (`tsc --strict --noEmit`): the
// hub, coordination and state store parts of index.d.ts. Correct code must
// check; each `@ts-expect-error` line must not.

import {
  DirectEnd,
  Hub,
  Mesh,
  Message,
  Orchestrator,
  StateStore,
  Subscription,
  Watcher,
  type CoordinationStatus,
  type Entry,
  type HubOptions,
  type Overflow,
  type PairStatus,
  type SnapshotInfo,
  type StateEvent,
  type SubscribeOptions,
  type SubscriptionStatus,
  type Value,
} from '../../index.js'

async function hub(): Promise<void> {
  const hubOptions: HubOptions = { queueCapacity: 64, overflow: 'dropOldest', promoteThreshold: 5000, rateWindowMs: 1000 }
  using o = new Orchestrator({ workers: 2, hub: hubOptions, autoPromoteMs: 1000, idleTimeoutMs: 60_000 })
  o.register({ name: 'PAES', pinned: true })
  const h: Hub = o.hub
  const delivered: number = await h.publish('engine.build.done', { ok: true, n: [1, 2n] }, { sender: 'PAES' })

  const opts: SubscribeOptions = { capacity: 16, overflow: 'block', blockTimeoutMs: 50, group: 'g', owner: 'PPO' }
  using cb: Subscription = h.subscribe(
    'engine.*.done',
    async (m: Message) => {
      const topic: string = m.topic
      const payload: Value = m.payload
      const sender: string | null = m.sender
      if (m.isRequest) m.reply({ topic, payload, sender })
    },
    { ...opts, onError: (err: unknown, m: Message | null) => void [err, m] },
  )
  using pull = h.subscribe('engine.>', { overflow: 'error' })
  const first: Message = await pull.recv({ timeoutMs: 100 })
  for await (const m of pull) {
    const t: string = m.topic
    void t
    break
  }
  const kind: 'callback' | 'pull' = cb.kind
  const st: SubscriptionStatus = cb.status()
  const policy: Overflow = st.overflow
  const counts: number = st.delivered + st.dropped + st.errors + st.queueLen
  const all: SubscriptionStatus[] = h.subscriptions()
  const was: boolean = pull.unsubscribe()

  const reply: Message = await h.request('svc.echo', 1, { timeoutMs: 100, sender: 'PAES' })
  const replies: Message[] = await h.requestMany('svc.census', null, { timeoutMs: 100, max: 3, quietMs: 10 })

  h.openDirect('PAES', 'PPO', 'hot')
  using a: DirectEnd = h.endpoint('PAES', 'PPO')
  await a.send({ x: 1 }, { timeoutMs: 10 })
  const v: Value = await a.recv({ timeoutMs: 10 })
  const sentNow: boolean = a.trySend(2)
  const maybe: Value | undefined = a.tryRecv()
  const cap: number = a.capacity
  const queued: Message | null = cb.kind === 'pull' ? cb.tryRecv() : null
  void [sentNow, maybe, cap, queued]
  using m: Mesh = h.mesh(['a', 'b', 'c'])
  const ab: DirectEnd = m.endpoint('a', 'b')
  const meshId: number = m.id

  const cs: CoordinationStatus = o.coordinationStatus()
  const mode: 'hierarchical' | 'direct' | 'mesh' | 'minimalist' = cs.mode
  const pair: PairStatus | undefined = cs.directPairs[0]
  const since: Date | undefined = pair?.since
  const idle: number | undefined = cs.minimalist?.idleTimeoutMs
  o.setAutoPromote(null)
  o.setIdleTimeout(5000)
  const changed: number = o.promotePairs()
  o.pinSystem('PAES', false)
  const swept: string[] = await o.deactivateIdle()
  const wf = o.workflow('w', [{ name: 's', fn: () => 1 }])
  const run = await o.runMinimal(wf, { input: 1 })
  void (await run.result)

  void [delivered, first, kind, policy, counts, all, was, reply, replies, v, ab, meshId, mode, since, idle, changed, swept]

  // @ts-expect-error: unknown overflow policy
  h.subscribe('x', { overflow: 'sometimes' })
  // @ts-expect-error: publish returns a Promise
  const n: number = h.publish('x', 1)
  // @ts-expect-error: requestMany needs its timeout
  await h.requestMany('x', 1, { max: 2 })
  // @ts-expect-error: a message's topic is read-only
  first.topic = 'y'
  // @ts-expect-error: runMinimal returns a Promise of a Run
  const syncRun: typeof run = o.runMinimal(wf)
  void [n, syncRun]
}

function state(o: Orchestrator): void {
  const s: StateStore = o.state
  const rev: number = s.put('k', { a: [1, 'b', null] }, { writer: 'PAES' })
  const e: Entry | null = s.get('k')
  const when: Date | undefined = e?.timestamp
  const writer: string | null | undefined = e?.writer
  const list: Entry[] = s.list('k')
  const gone: number | null = s.delete('k')
  const next: number = s.compareAndSet('k', 0, 1)
  const bumped: number = s.update('k', (cur: Value | undefined) => (typeof cur === 'number' ? cur + 1 : 1))
  const w: Watcher = s.watch('k', { prefix: true, fromRevision: s.revision })
  void (async () => {
    for await (const ev of w) {
      const evt: StateEvent = ev
      const deleted: boolean = evt.deleted
      void deleted
    }
  })()
  using cbw = s.watch('k', {}, (ev: StateEvent) => void ev.revision)
  const info: SnapshotInfo = s.snapshot('/tmp/x.json')
  const back: SnapshotInfo = s.restore('/tmp/x.json')
  void [rev, when, writer, list, gone, next, bumped, info.entries, back.revision, cbw.errors]

  // @ts-expect-error: the expected revision is a number
  s.compareAndSet('k', '3', 1)
  // @ts-expect-error: put is synchronous, returning the revision
  void s.put('k', 1).then
}

void hub
void state
