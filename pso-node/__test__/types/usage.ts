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
  VirtualClock,
  type CoordinationAction,
  type CoordinationChange,
  type CoordinationPlan,
  type Evolution,
  type HealthCheck,
  type HealthInfo,
  type HealthReport,
  type Insights,
  type Patterns,
  type Recommendation,
  type SnapshotInfo,
  type StrategyChange,
  type SupervisionInfo,
  type SupervisionOptions,
  type PerformanceMetrics,
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
  const state: 'Registered' | 'Activating' | 'Active' | 'Deactivating' | 'Inactive' | 'Failed' | 'GaveUp' = s.state
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

async function supervisionAndIntelligence(): Promise<void> {
  const clock = new VirtualClock()
  using o = new Orchestrator({ workers: 2, clock, flapThreshold: 5, flapWindowMs: 60_000, alertIntervalMs: 0 })
  const health: HealthCheck = {
    probe: async (system: string): Promise<HealthReport> => ({ status: system ? 'healthy' : 'degraded', detail: 'ok' }),
    intervalMs: 1000,
    timeoutMs: 500,
    failuresBeforeUnhealthy: 3,
    successesBeforeHealthy: 1,
    watchdogMs: 5000,
  }
  const supervise: SupervisionOptions = {
    policy: 'on_failure',
    strategy: 'rest_for_one',
    backoffMs: 100,
    maxBackoffMs: 30_000,
    jitter: false,
    resetAfterMs: 60_000,
    maxRestarts: 5,
    withinMs: 60_000,
  }
  o.register({ name: 'db', health, supervise })
  o.register({ name: 'cache', health: { probe: () => 'healthy' } })
  o.setHealthCheck('db', { watchdogMs: 1000 })
  o.setHealthCheck('db', null)
  o.setSupervision('db', { policy: 'always' })
  o.setSupervision('db', null)
  o.checkIn('db')
  o.reportFailure('db', 'segfault')
  await clock.advance(1000)
  const elapsed: number = clock.elapsedMs + clock.pending
  const h: HealthInfo | null = o.status('db').health
  const sv: SupervisionInfo | null = o.status('db').supervision
  const next: number | null | undefined = sv?.nextAttemptInMs
  const gaveUp: boolean | undefined = sv?.gaveUp
  const flapping: boolean | undefined = h?.flapping
  const limit: number | null = o.status('db').concurrency

  const p: Patterns = o.learnPatterns()
  const samples: number | undefined = p.operations[0]?.samples
  const together: number | undefined = p.coActivation[0]?.together
  const info: SnapshotInfo = o.snapshot('/tmp/x.json')
  const restored: number = o.restore('/tmp/x.json').entries
  const i: Insights = o.coordinationInsights()
  const pairs: Array<[string, string]> = i.idleDirectPairs
  const stepMs: number | undefined = i.criticalPaths[0]?.steps[0]?.ms
  const recs: Recommendation[] = o.optimizationRecommendations()
  for (const r of recs) {
    const a: CoordinationAction = r.action
    switch (a.kind) {
      case 'promote_to_direct':
      case 'demote_direct':
        void [a.a, a.b]
        break
      case 'set_concurrency_limit': {
        const from: number | null = a.from
        void [a.system, from, a.to]
        break
      }
      case 'deactivate_idle':
        void a.system
        break
      case 'pre_activate':
        void a.systems
        break
      case 'set_scheduling_policy':
        void [a.from, a.to]
        break
      case 'other':
        void a.description
        break
    }
    void [r.target, r.evidence, r.expectedGain, r.confidence, r.samples]
  }
  const plan: CoordinationPlan = await o.optimizeCoordination({ apply: true, minSamples: 20, minConfidence: 0.6, idleAfterMs: 1000 })
  const why: string | undefined = plan.skipped[0]?.why
  const log: CoordinationChange[] = o.coordinationLog()
  const undone: CoordinationChange = await o.revertChange(log[0]?.id ?? 0)
  const change: StrategyChange = { kind: 'concurrency_limit', system: 'db', limit: null }
  const ev: Evolution = await o.evolveCoordination(change, async () => {}, { rounds: 3, metric: 'error_rate', margin: 0.05 })
  await o.evolveCoordination({ kind: 'scheduling_policy', policy: 'fifo' }, () => undefined)
  const kept: boolean = ev.kept && o.evolutionLog().length > 0
  const p99: number = ev.trial.p99Ms + ev.baseline.medianMs
  void [elapsed, next, gaveUp, flapping, limit, samples, together, info, restored, pairs, stepMs, why, undone, kept, p99]

  const hubShare: number = i.hubLatency.share.share + (i.hubLatency.slowestTopics[0]?.deliveryP99Ms ?? 0)
  using m2 = new Orchestrator({ metrics: false, latencySampleEvery: 1, maxTopics: 64, utilizationIntervalMs: 1000, utilizationIntervals: 60 })
  const metrics: PerformanceMetrics = m2.performanceMetrics()
  const p50: number | undefined = metrics.operations[0]?.runTime.p50
  const text: string = metrics.toJson() + metrics.toPrometheus()
  m2.setMetricsEnabled(true)
  const on: boolean = m2.metricsEnabled
  m2.resetMetrics()
  void [hubShare, p50, text, on]
  // @ts-expect-error: metricsEnabled is read-only
  m2.metricsEnabled = false

  // @ts-expect-error: advance returns a Promise
  const sync: undefined = clock.advance(5)
  // @ts-expect-error: unknown policy
  o.setSupervision('db', { policy: 'sometimes' })
  // @ts-expect-error: a probe answers with a status
  o.setHealthCheck('db', { probe: () => 42 })
  // @ts-expect-error: a limit change names its system
  await o.evolveCoordination({ kind: 'concurrency_limit', limit: 2 }, () => {})
  // @ts-expect-error: optimizeCoordination returns a Promise
  const syncPlan: CoordinationPlan = o.optimizeCoordination()
  // @ts-expect-error: options are an object
  await o.optimizeCoordination(true)
  void [sync, syncPlan]
}

void main
void supervisionAndIntelligence
void workflows
void resources
