"""Python under stress (issue 7): many Python threads calling into one
orchestrator (register, activate, deactivate, status, workflow runs, hub
publish, state) while its handlers -- lifecycle handlers, step functions and
hub callbacks, each of which calls back into the orchestrator -- run on the
worker threads. A GIL deadlock would hang, so the workload runs in a
subprocess with a timeout and a timeout fails the test. The child prints its
counts as JSON; the parent checks them (every thread finished every round,
every run's counts balance, every published message reached the callback).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

THREADS = 8
ROUNDS = 150
TIMEOUT = 240.0  # seconds: a deadlock hangs for good; a slow CI box takes < 30 s

CHILD = textwrap.dedent(
    """
    import json, sys, threading
    import pso

    THREADS, ROUNDS = int(sys.argv[1]), int(sys.argv[2])
    errors = []
    lock = threading.Lock()
    counts = {"rounds": 0, "runs": 0, "steps_ok": 0, "steps_failed": 0,
              "unbalanced": 0, "published": 0, "activated": 0}
    delivered = [0]

    with pso.Orchestrator(workers=2) as o:
        o.register("base", on_activate=lambda name: o.status("base"))

        def on_message(m):
            # A hub callback that calls back into the orchestrator.
            o.status("base")
            with lock:
                delivered[0] += 1

        sub = o.hub.subscribe("stress.>", on_message, capacity=1024, overflow="block",
                              block_timeout=60.0)

        def step(ctx):
            # A step function that calls back into the orchestrator and hub.
            o.status("base")
            o.hub.publish("other." + ctx.step, ctx.attempt)
            if ctx.step.endswith("bad"):
                raise RuntimeError("planned")
            return ctx.step

        def worker(t):
            try:
                for i in range(ROUNDS):
                    name = f"sys{t}_{i}"
                    o.register(name, requires=["base"],
                               on_activate=lambda n: o.status("base"),
                               on_deactivate=lambda n: None)
                    rep = o.activate_system(name)
                    assert not rep.failures, rep.failures
                    assert o.status(name).state == "Active", o.status(name).state
                    wf = o.workflow(f"wf{t}_{i}", [pso.Step(f"s{k}", fn=step) for k in range(6)]
                                    + [pso.Step("sbad", fn=step)])
                    r = o.coordinate_systems(wf, i).result(timeout=120)
                    c = r.counts
                    o.hub.publish(f"stress.{t}", i)
                    o.state.put(f"k{t}", i)
                    assert o.state.get(f"k{t}").value == i
                    o.deactivate_system(name)
                    [s.state for s in o.system_status()]
                    with lock:
                        counts["rounds"] += 1
                        counts["runs"] += 1
                        counts["steps_ok"] += c.succeeded
                        counts["steps_failed"] += c.failed
                        counts["published"] += 1
                        counts["activated"] += 1
                        if c.accepted != 7 or c.terminal != 7 or c.unfinished:
                            counts["unbalanced"] += 1
            except BaseException as e:
                errors.append(f"thread {t}: {type(e).__name__}: {e}")

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        # Every publish to stress.> reaches the block-policy callback.
        import time
        end = time.monotonic() + 60
        while time.monotonic() < end:
            with lock:
                if delivered[0] >= counts["published"]:
                    break
            time.sleep(0.01)
        counts["delivered"] = delivered[0]
        counts["dropped"] = sub.status().dropped
        sub.unsubscribe()
    counts["errors"] = errors
    print(json.dumps(counts))
    """
)


def test_many_threads_call_in_while_handlers_run() -> None:
    try:
        p = subprocess.run(
            [sys.executable, "-c", CHILD, str(THREADS), str(ROUNDS)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired as e:
        raise AssertionError(
            f"the stress workload did not finish in {TIMEOUT} s (a GIL deadlock?)\n"
            f"stderr: {e.stderr!r}"
        ) from None
    assert p.returncode == 0, p.stderr
    counts = json.loads(p.stdout.strip().splitlines()[-1])
    print(f"\npython stress report: {counts}")
    rounds = THREADS * ROUNDS
    assert counts["errors"] == []
    assert counts["rounds"] == rounds
    assert counts["unbalanced"] == 0
    assert counts["steps_ok"] == 6 * rounds
    assert counts["steps_failed"] == rounds
    assert counts["dropped"] == 0
    assert counts["delivered"] == counts["published"] == rounds
