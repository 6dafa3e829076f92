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

void main
void workflows
