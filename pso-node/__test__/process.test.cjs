'use strict'
// The process exits on its own: nothing pso-node leaves behind keeps the
// event loop alive. Each scenario runs in a child `node` that must exit with
// code 0 within a few seconds (it is killed otherwise).

const test = require('node:test')
const assert = require('node:assert/strict')
const path = require('node:path')
const { spawnSync } = require('node:child_process')

const T = { timeout: 20_000 }
const PKG = JSON.stringify(path.resolve(__dirname, '..'))

function runChild(body) {
  const script = `
    const { Orchestrator } = require(${PKG})
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
    ;(async () => { ${body} })().then(
      () => console.log('finished'),
      (e) => { console.error(e); process.exitCode = 1 },
    )`
  const started = Date.now()
  const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 5000 })
  const ms = Date.now() - started
  assert.equal(child.signal, null, `the child did not exit on its own within 5 s (killed); stderr: ${child.stderr}`)
  assert.equal(child.status, 0, `exit code ${child.status}; stderr: ${child.stderr}`)
  return { stdout: child.stdout, stderr: child.stderr, ms }
}

test('exits after activate + close', T, () => {
  const { stdout } = runChild(`
    const o = new Orchestrator({ workers: 2 })
    o.register({ name: 'db', onActivate: () => {}, onDeactivate: async () => { await sleep(5) } })
    o.register({ name: 'api', requires: ['db'], onActivate: async () => { await sleep(5) } })
    const r = await o.activateSystem('api')
    console.log(r.activated.join(','))
    await o.deactivateAll()
    o.close()
  `)
  assert.equal(stdout, 'db,api\nfinished\n')
})

test('exits even without close() (handlers never hold the loop)', T, () => {
  const { stdout } = runChild(`
    const o = new Orchestrator({ workers: 1 })
    o.register({ name: 'a', onActivate: async () => { await sleep(1) } })
    await o.activateSystem('a')
  `)
  assert.equal(stdout, 'finished\n')
})

test('exits after a handler that never settled timed out', T, () => {
  const { stdout } = runChild(`
    const o = new Orchestrator({ workers: 1 })
    o.register({ name: 'stuck', timeoutMs: 50, onActivate: () => new Promise(() => {}) })
    const e = await o.activateSystem('stuck').catch((e) => e)
    console.log(e.code, e.report.outcomes[0].outcome)
    o.close()
  `)
  assert.equal(stdout, 'PSO_HANDLER_FAILED timed_out\nfinished\n')
})

test('exits when close() is called while an activation runs', T, () => {
  const { stdout } = runChild(`
    const o = new Orchestrator({ workers: 1 })
    o.register({ name: 'slow', onActivate: async () => { await sleep(50) } })
    const p = o.activateSystem('slow')
    await sleep(10)
    o.close()
    const r = await p
    console.log(r.activated.join(','))
  `)
  assert.equal(stdout, 'slow\nfinished\n')
})

test('exits when close() is called from inside a handler', T, () => {
  const { stdout } = runChild(`
    const o = new Orchestrator({ workers: 1 })
    o.register({ name: 'a', onActivate: () => { o.close() } })
    o.register({ name: 'b', requires: ['a'] })
    const r = await o.activateSystem('b').catch((e) => e)
    console.log(r.activated ? 'resolved' : r.code)
  `)
  assert.match(stdout, /^(resolved|PSO_CLOSED|PSO_HANDLER_FAILED)\nfinished\n$/)
})

test('works in a worker thread, and the worker ends cleanly', T, () => {
  const { stdout } = runChild(`
    const { Worker } = require('node:worker_threads')
    const code = \`
      const { parentPort } = require('node:worker_threads')
      const { Orchestrator } = require(${PKG})
      const o = new Orchestrator({ workers: 1 })
      o.register({ name: 'w', onActivate: () => new Promise((r) => setTimeout(r, 5)) })
      o.activateSystem('w').then((r) => { parentPort.postMessage(r.activated[0]); o.close() })
    \`
    const w = new Worker(code, { eval: true })
    const msg = await new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject) })
    const exit = await new Promise((resolve) => w.once('exit', resolve))
    console.log(msg, exit)
  `)
  assert.equal(stdout, 'w 0\nfinished\n')
})
