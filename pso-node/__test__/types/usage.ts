// Compiled by types.test.cjs with `tsc --strict --noEmit`: the generated
// index.d.ts must describe the API precisely enough that correct code checks
// and wrong code (each `@ts-expect-error`) does not.

import {
  Orchestrator,
  Run,
  Workflow,
  errorCodes,
  type ActivationReport,
  type ChildSpec,
  type Estimate,
  type RunOptions,
  type RunProgress,
  type RunResult,
  type StepContext,
  type StepFn,
  type StepRecord,
  type StepSpec,
  type Value,
  type ValueInput,
  type EdgeSpec,
  type ErrorCode,
  type Plan,
  type SystemOutcome,
  type SystemSpec,
  type SystemStatus,
  Lease,
  type AllocateOptions,
  type GangPart,
  type LeaseStatus,
  type PreemptNotice,
  type Priority,
  type ResourceAction,
  type ResourcePlan,
  type ResourceStatus,
  type WaiterStatus,
} from '../../index.js'

async function main(): Promise<void> {
  using o = new Orchestrator({ workers: 2, transitionTimeoutMs: 5000 })
  const db: SystemSpec = {
    name: 'db',
    tier: 'data',
    tags: ['sql'],
    priority: 'high',
    resources: { cpu: 500, memory: 256 },
    timeoutMs: 1000,
    onActivate: async (system: string) => {
      await Promise.resolve(system)
    },
    onDeactivate: (system) => {
      void system.length
    },
  }
  o.register(db)
  const edges: EdgeSpec[] = [{ from: 'api', kind: 'requires', to: 'db' }]
  const added: number = o.registerMany([{ name: 'api' }], edges)
  o.connect('api', 'wants', 'db')
  o.setHandlers('api', { onActivate: () => {} })
  o.setHandlers('api')
  const n: number = o.loadTopologyString('[[systems]]\nname = "x"\n', 'toml') + o.loadTopology('t.json')

  const report: ActivationReport = await o.activateSystem('api')
  const first: SystemOutcome | undefined = report.outcomes[0]
  const outcome: 'activated' | 'deactivated' | 'already_active' | 'not_active' | 'failed' | 'timed_out' | 'blocked' | undefined =
    first?.outcome
  const error: string | null | undefined = first?.error
  const ms: number = report.elapsedMs + (first?.queuedMs ?? 0) + (first?.ranMs ?? 0)
  const names: string[] = [...report.activated, ...report.deactivated, ...report.failures.map((f) => f.system)]
  await o.activateAll()
  await o.deactivateSystem('api')
  await o.deactivateAll()

  const statuses: SystemStatus[] = o.systemStatus()
  const s: SystemStatus = o.status('db')
  const since: Date = s.since
  const at: Date | undefined = s.history[0]?.at
  const state: 'Registered' | 'Activating' | 'Active' | 'Deactivating' | 'Inactive' | 'Failed' = s.state
  const tier: string | null = s.tier
  const lastError: string | null = s.lastError
  const cpu: number | undefined = s.resources['cpu']
  const why: string = o.whyInactive('db')
  const plan: Plan = o.plan('api')
  const levels: string[][] = plan.levels
  const text: string = o.export() + o.export('toml') + o.export('dot') + o.export('mermaid')
  const facts: number = o.workers + o.size
  const codes: ErrorCode[] = errorCodes()
  o.close()
  o[Symbol.dispose]()
  void [added, n, state, outcome, error, ms, names, statuses, since, at, tier, lastError, cpu, why, levels, text, facts, codes]

  // @ts-expect-error: unknown edge kind
  o.connect('a', 'require', 'b')
  // @ts-expect-error: unknown priority
  o.register({ name: 'x', priority: 'urgent' })
  // @ts-expect-error: name is required
  o.register({ tier: 'x' })
  // @ts-expect-error: handlers take the system name
  o.register({ name: 'x', onActivate: (n: number) => n })
  // @ts-expect-error: unknown export format
  o.export('yaml')
  // @ts-expect-error: unknown topology format
  o.loadTopologyString('', 'yaml')
  // @ts-expect-error: lifecycle calls return Promises
  const sync: ActivationReport = o.activateSystem('db')
  // @ts-expect-error: state is a closed set
  const bad: SystemStatus['state'] = 'Running'
  void [sync, bad]
}

async function workflows(o: Orchestrator): Promise<void> {
  const collect: StepFn = async (ctx: StepContext) => {
    const step: string = ctx.step
    const system: string | null = ctx.system
    const op: string | null = ctx.op
    const attempt: number = ctx.attempt
    const raw: Value | undefined = ctx.inputs['raw']
    const input: Value = ctx.input
    const runInput: Value = ctx.runInput
    const aborted: boolean = ctx.signal.aborted
    ctx.fanOut([{ fn: (c) => c.input, input: 1 }, { system: 'db', op: 'get', input: { k: [1, 'x', null] } }])
    void [step, system, op, attempt, raw, input, runInput, aborted]
    return { bytes: Buffer.from('x'), big: 2n ** 60n, list: [true, 1.5, undefined] }
  }
  o.register({ name: 'db', operations: { get: (ctx) => ctx.input, collect }, concurrency: 2 })
  o.registerMany([{ name: 'cache', operations: { warm: () => {} } }])
  o.setOperation('db', 'put', (ctx) => Promise.resolve(ctx.input))
  o.setConcurrencyLimit('db', 4)
  o.setConcurrencyLimit('db', null)
  const estimates: Estimate[] = o.estimates()
  const mean: number | undefined = estimates[0]?.meanMs

  const steps: StepSpec[] = [
    { name: 'fetch', system: 'db', op: 'get', retries: 2, backoffMs: 5, maxBackoffMs: 50, timeoutMs: 1000 },
    { name: 'parse', fn: (ctx) => ctx.inputs['raw'] ?? null, inputs: { raw: 'fetch' }, priority: 'high' },
    { name: 'report', fn: () => undefined, after: ['parse'], when: 'parse' },
    { name: 'maybe', fn: () => 'x', when: (ctx) => ctx.attempt > 0 },
  ]
  const wf: Workflow = o.workflow('etl', steps)
  const facts: [string, number, number, string[], string[]] = [wf.name, wf.length, wf.size, wf.stepNames, wf.systems]
  const loaded: Workflow = o.loadWorkflow('wf.toml')
  const parsed: Workflow = o.loadWorkflowString('name = "x"', 'toml')
  const fromJson: Workflow = o.loadWorkflowString('{"name": "x"}', 'json')

  const controller = new AbortController()
  const options: RunOptions = { input: { n: 1, at: 'now' }, deadlineMs: 5000, timing: false, signal: controller.signal }
  const run: Run = o.coordinateSystems(wf, options)
  const id: number = run.id
  const done: boolean = run.done
  const progress: RunProgress = run.progress()
  const running: RunProgress['state'] = progress.state
  const cancelled: boolean = run.cancel()
  const r: RunResult = await run.result
  const ok: boolean = r.ok && r.state === 'succeeded'
  const outputs: Record<string, Value> = r.outputs
  const errors: Record<string, string> = r.errors
  const accounted: boolean = r.counts.accepted === r.counts.succeeded + r.counts.failed + r.counts.cancelled + r.counts.timedOut + r.counts.skipped
  const record: StepRecord | undefined = r.steps[0]
  const stepState: StepRecord['state'] | undefined = record?.state
  const ms: number = r.elapsedMs + (record?.queuedMs ?? 0) + (record?.ranMs ?? 0)
  const worker: number | null | undefined = record?.worker
  const child: ChildSpec = { system: 'db', op: 'get' }
  const value: ValueInput = { nested: [new Uint8Array(2), 1n] }
  await o.coordinateSystems(loaded).result
  o.coordinateSystems(parsed, { input: value })
  o.coordinateSystems(fromJson)
  void [mean, facts, id, done, running, cancelled, ok, outputs, errors, accounted, stepState, ms, worker, child]

  // @ts-expect-error: a step needs a name
  o.workflow('w', [{ fn: () => 1 }])
  // @ts-expect-error: timeoutMs is a number
  o.workflow('w', [{ name: 'a', fn: () => 1, timeoutMs: '5s' }])
  // @ts-expect-error: step functions take a ctx, not a string
  o.workflow('w', [{ name: 'a', fn: (s: string) => s }])
  // @ts-expect-error: a Date is not a value PSO carries
  o.workflow('w', [{ name: 'a', fn: () => new Date() }])
  // @ts-expect-error: operations are step functions
  o.register({ name: 'x', operations: { get: 42 } })
  // @ts-expect-error: coordinateSystems takes a Workflow
  o.coordinateSystems({ name: 'etl' })
  // @ts-expect-error: unknown run option
  o.coordinateSystems(wf, { deadline: 5 })
  // @ts-expect-error: signal is an AbortSignal
  o.coordinateSystems(wf, { signal: controller })
  // @ts-expect-error: result is a Promise
  const sync: RunResult = run.result
  // @ts-expect-error: run states are a closed set
  const badState: RunResult['state'] = 'running'
  // @ts-expect-error: a child is a function or a system operation
  const badChild: ChildSpec = { input: 1 }
  // @ts-expect-error: fanOut takes an array of children
  const badFan: StepFn = (ctx) => ctx.fanOut({ fn: () => 1 })
  // @ts-expect-error: a function is not a value
  const badValue: ValueInput = () => 1
  void [sync, badState, badChild, badFan, badValue]
}

async function resources(): Promise<void> {
  using o = new Orchestrator({ resourceAgingStepMs: 1000, preemptionGraceMs: 500, idleLeaseAfterMs: 60_000 })
  o.setCapacity('gpu', 4)
  o.setGroupQuota('batch', 'gpu', 2)
  o.setGroupQuota('batch', 'gpu', null)
  o.setResourceWeight('trainer', 2)
  const controller = new AbortController()
  const opts: AllocateOptions = { priority: 'high', group: 'batch', preemptible: true, ttlMs: 60_000, waitMs: 50, signal: controller.signal }
  using lease: Lease = await o.allocateResources('trainer', { gpu: 2 }, opts)
  const id: number = lease.id
  const system: string = lease.system
  const gpus: number | undefined = lease.amounts['gpu']
  const held: boolean = lease.held
  const left: number | null = lease.expiresInMs
  lease.touch()
  lease.onPreempt((notice: PreemptNotice) => {
    const n: number = notice.lease + notice.graceMs
    void [n, notice.system]
  })
  const released: boolean = lease.release()
  const parts: GangPart[] = [{ system: 'trainer', amounts: { gpu: 1 } }, { system: 'loader', amounts: { cpu: 4 }, waitMs: 100 }]
  const gang: Lease[] = await o.allocateGang(parts)
  for (const l of gang) l[Symbol.dispose]()
  o.setStepResources('trainer', { gpu: 1 }, { priority: 'low', ttlMs: 1000 })
  o.setStepResources('trainer', null)
  const st: ResourceStatus = o.resourceStatus()
  const free: number | undefined = st.dimensions[0]?.free
  const ls: LeaseStatus | undefined = st.leases[0]
  const ttl: number | null | undefined = ls?.ttlRemainingMs
  const group: string | null | undefined = ls?.group
  const w: WaiterStatus | undefined = st.waiters[0]
  const p: Priority | undefined = w?.effectivePriority
  const plan: ResourcePlan = o.optimizeResources(true)
  for (const a of plan.actions) {
    switch (a.action) {
      case 'reclaim_expired':
        void a.lease
        break
      case 'reclaim_idle':
        void a.idleMs
        break
      case 'rebalance':
        void [a.inFavorOf, a.share, a.theirShare]
        break
      case 'resize_concurrency':
        void [a.from, a.to, a.reason]
        break
      case 'other':
        void a.description
        break
    }
  }
  const one: ResourceAction | undefined = o.optimizeResources().actions[0]
  void [id, system, gpus, held, left, released, free, ttl, group, p, one, plan.applied]

  // @ts-expect-error: amounts are numbers
  await o.allocateResources('a', { gpu: '2' })
  // @ts-expect-error: allocateResources returns a Promise of a Lease
  const syncLease: Lease = o.allocateResources('a', { gpu: 1 })
  // @ts-expect-error: unknown priority
  await o.allocateResources('a', { gpu: 1 }, { priority: 'urgent' })
  // @ts-expect-error: waitMs, not wait
  await o.allocateResources('a', { gpu: 1 }, { wait: 5 })
  // @ts-expect-error: a gang part needs its amounts
  await o.allocateGang([{ system: 'a' }])
  // @ts-expect-error: setStepResources takes no signal
  o.setStepResources('a', { gpu: 1 }, { signal: controller.signal })
  // @ts-expect-error: a plan action has no 'lease' until told which one it is
  void o.optimizeResources().actions[0]?.lease
  // @ts-expect-error: the lease id is read-only
  lease.id = 5
  // @ts-expect-error: the notice is an object
  lease.onPreempt((notice: string) => notice)
  void syncLease
}

void main
void workflows
void resources
