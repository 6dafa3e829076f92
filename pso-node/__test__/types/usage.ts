// Compiled by types.test.cjs with `tsc --strict --noEmit`: the generated
// index.d.ts must describe the API precisely enough that correct code checks
// and wrong code (each `@ts-expect-error`) does not.

import {
  Orchestrator,
  errorCodes,
  type ActivationReport,
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

void main
