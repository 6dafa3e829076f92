// The JS half of the step bridge (see context.rs). Evaluated once per
// orchestrator with `napi_run_script`; it is a function expression that takes
// the three native callbacks and returns the helpers the Rust side calls.
// It never sees pso internals: ids are indices into the Rust side's table of
// steps in flight.
(function (settle, fanOut, makeSignal) {
  'use strict'
  const PENDING = Symbol('pso.pending')

  /** What a step function receives (docs/API.md, "A step's function receives a context"). */
  class StepContext {
    #id
    #signal
    constructor(id, step, system, op, attempt, inputs, input, runInput) {
      this.step = step
      this.system = system
      this.op = op
      this.attempt = attempt
      this.inputs = inputs
      this.input = input
      this.runInput = runInput
      this.#id = id
    }

    /** Aborted when PSO stops waiting for this step (cancel, timeout, deadline, close). */
    get signal() {
      if (this.#signal === undefined) this.#signal = makeSignal(this.#id)
      return this.#signal
    }

    /** Emits fan-out children: `{ fn, input }` or `{ system, op, input }`. */
    fanOut(children) {
      fanOut(this.#id, children)
    }

    get [Symbol.toStringTag]() {
      return 'StepContext'
    }
  }

  function isThenable(r) {
    return r !== null && (typeof r === 'object' || typeof r === 'function') && typeof r.then === 'function'
  }

  // Runs a step function. A synchronous result is returned; otherwise the
  // outcome is reported through `settle` and PENDING is returned.
  function invoke(fn, id, step, system, op, attempt, inputs, input, runInput) {
    const ctx = new StepContext(id, step, system, op, attempt, inputs, input, runInput)
    let r
    try {
      r = fn(ctx)
      // PENDING is a symbol: a symbol result must not be mistaken for it.
      if (typeof r === 'symbol') {
        settle(id, true, r)
      } else if (!isThenable(r)) {
        return r
      } else {
        Promise.resolve(r).then(
          (v) => settle(id, true, v),
          (e) => settle(id, false, e),
        )
      }
    } catch (e) {
      settle(id, false, e)
    }
    return PENDING
  }

  // Runs a `when` predicate: its truthiness, or a throw.
  function condition(fn, step, system, op, attempt, inputs, input, runInput) {
    const ctx = new StepContext(-1, step, system, op, attempt, inputs, input, runInput)
    const r = fn(ctx)
    if (isThenable(r)) {
      throw new TypeError(`the when() condition of step '${step}' returned a Promise; conditions must decide synchronously`)
    }
    return Boolean(r)
  }

  // Cancels a run when `signal` aborts; returns the function that stops
  // listening, or null if it had aborted already (and `cancel` was called).
  // Runs sharing a signal share one listener (no listener-leak warnings).
  const watched = new WeakMap() // signal -> { cancels: Set, onAbort }
  function watch(signal, cancel) {
    if (signal.aborted) {
      cancel()
      return null
    }
    let w = watched.get(signal)
    if (w === undefined) {
      const cancels = new Set()
      const onAbort = () => {
        watched.delete(signal)
        for (const c of cancels) c()
      }
      w = { cancels, onAbort }
      watched.set(signal, w)
      signal.addEventListener('abort', onAbort, { once: true })
    }
    w.cancels.add(cancel)
    return () => {
      w.cancels.delete(cancel)
      if (w.cancels.size === 0 && watched.get(signal) === w) {
        watched.delete(signal)
        signal.removeEventListener('abort', w.onAbort)
      }
    }
  }

  // A RunResult: `base` plus `outputs`, `errors` and `steps`, which are
  // built on first access (`load(0 | 1 | 2)`) and then kept as plain data.
  function makeResult(base, load) {
    lazy(base, 'outputs', () => load(0))
    lazy(base, 'errors', () => load(1))
    lazy(base, 'steps', () => load(2))
    return base
  }

  function lazy(obj, key, make) {
    const settle = (value) => {
      Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true })
      return value
    }
    Object.defineProperty(obj, key, {
      enumerable: true,
      configurable: true,
      get: () => settle(make()),
      set: settle,
    })
  }

  return {
    PENDING,
    makeResult,
    invoke,
    condition,
    watch,
    isAbortSignal: (s) => s instanceof AbortSignal,
    // [signal, abort]: the Rust side keeps only the abort function.
    controller: () => {
      const c = new AbortController()
      return [c.signal, () => c.abort()]
    },
    noop: () => {},
  }
})
