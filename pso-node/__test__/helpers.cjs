'use strict'
// Shared helpers for the pso-node tests. Every orchestrator made here is
// closed when its test ends, even if an assertion failed first, so a failing
// test cannot keep the event loop (and `node --test`) alive.

const assert = require('node:assert/strict')
const { Orchestrator } = require('..')

/** A new orchestrator, closed after test `t`. */
function make(t, options = { workers: 2 }) {
  const o = new Orchestrator(options)
  t.after(() => o.close())
  return o
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Asserts that `fn()` throws a PSO error with `code`; returns the error. */
function throwsPso(fn, code, message) {
  let caught
  assert.throws(fn, (e) => {
    caught = e
    return true
  })
  checkPso(caught, code, message)
  return caught
}

/** Asserts that `promise` rejects with a PSO error with `code`; returns it. */
async function rejectsPso(promise, code, message) {
  let caught
  await assert.rejects(promise, (e) => {
    caught = e
    return true
  })
  checkPso(caught, code, message)
  return caught
}

function checkPso(e, code, message) {
  assert.ok(e instanceof Error, `expected an Error, got ${e}`)
  assert.equal(e.code, code, `code of: ${e.message}`)
  assert.equal(e.kind, code.slice('PSO_'.length))
  if (message !== undefined) assert.match(e.message, message)
}

module.exports = { make, sleep, throwsPso, rejectsPso }
