"""Python-callable workflow steps through PSO vs graphlib + ThreadPoolExecutor
vs Dask's threaded scheduler, in one run. Prints microseconds per step.

    pip install dask            # in the venv, for this benchmark only
    python pso-py/bench/bench_workflow.py [--steps 10000] [--workers 2] [--repeat 5]

Shapes (same step function everywhere, a trivial Python callable):

* independent: N steps, no edges.
* wide DAG: N/1000 layers of 1000 steps; each step after 2 steps of the
  previous layer.

For PSO, "run" is `coordinate_systems(wf).result()` of an already built
workflow (a workflow is built once and run many times); "build" is
`Orchestrator.workflow` with N `pso.Step`s; "total" is both. The baselines
build their graph inside the timed section, so compare them with PSO's total
as well as its run. Each figure is the median of --repeat runs (min in
brackets). Not run in CI: it is a measurement, not a test.

The last lines compare PSO's run with the goals: at most 3 us per step, and
at least 10x faster than Dask.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import graphlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import pso

LAYER = 1000


def shape(kind: str, n: int) -> dict[str, list[str]]:
    """Step name -> names of the steps it runs after."""
    if kind == "independent":
        return {f"s{i}": [] for i in range(n)}
    graph: dict[str, list[str]] = {}
    layers = max(1, n // LAYER)
    for layer in range(layers):
        for j in range(LAYER):
            deps = []
            if layer > 0:
                a = (j * 7 + layer) % LAYER
                b = (j * 13 + 3 * layer + 1) % LAYER
                deps = sorted({f"s{(layer - 1) * LAYER + a}", f"s{(layer - 1) * LAYER + b}"})
            graph[f"s{layer * LAYER + j}"] = deps
    return graph


def step(ctx: pso.StepContext) -> None:
    return None


def plain(*_deps: object) -> None:
    return None


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def bench_pso(graph: dict[str, list[str]], workers: int, repeat: int, timing: bool) -> dict[str, list[float]]:
    with pso.Orchestrator(workers=workers) as o:

        def build() -> pso.Workflow:
            return o.workflow("bench", [pso.Step(k, fn=step, after=v) for k, v in graph.items()])

        builds = timed(build, repeat)
        wf = build()

        def run() -> None:
            r = o.coordinate_systems(wf, timing=timing).result()
            assert r.ok and r.counts.succeeded == len(graph), r

        run()  # warm-up: estimates and buffers
        runs = timed(run, repeat)
    return {"build": builds, "run": runs}


def bench_threadpool(graph: dict[str, list[str]], workers: int, repeat: int) -> list[float]:
    def run() -> None:
        ts = graphlib.TopologicalSorter(graph)
        ts.prepare()
        done = 0
        with cf.ThreadPoolExecutor(max_workers=workers) as ex:
            pending: dict[cf.Future[None], str] = {}
            while ts.is_active():
                for node in ts.get_ready():
                    pending[ex.submit(plain)] = node
                finished, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for f in finished:
                    f.result()
                    ts.done(pending.pop(f))
                    done += 1
        assert done == len(graph)

    return timed(run, repeat)


def bench_dask(graph: dict[str, list[str]], workers: int, repeat: int) -> list[float] | None:
    try:
        import dask
        import dask.threaded
    except ImportError:
        return None

    def run() -> None:
        dsk = {k: (plain, *v) for k, v in graph.items()}
        out = dask.threaded.get(dsk, list(graph), num_workers=workers)
        assert len(out) == len(graph)

    return timed(run, repeat)


def us(samples: list[float], n: int) -> str:
    med = statistics.median(samples) / n * 1e6
    return f"{med:8.2f} us/step  [min {min(samples) / n * 1e6:.2f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--shapes", default="independent,wide")
    args = ap.parse_args()
    n, w, rep = args.steps, args.workers, args.repeat
    try:
        from importlib.metadata import version

        dask_version = version("dask")
    except ImportError:
        dask_version = "not installed (pip install dask)"
    print(
        f"python {platform.python_version()}, pso {pso.__version__}, dask {dask_version}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start"
    )
    print(f"{n} Python-callable steps, {w} workers/threads, median of {rep}\n")
    for kind in args.shapes.split(","):
        kind = "independent" if kind == "independent" else "wide"
        graph = shape(kind, n)
        edges = sum(len(v) for v in graph.values())
        print(f"== {kind}: {len(graph)} steps, {edges} edges")
        p = bench_pso(graph, w, rep, timing=True)
        p_off = bench_pso(graph, w, rep, timing=False)
        tp = bench_threadpool(graph, w, rep)
        dk = bench_dask(graph, w, rep)
        total = [b + r for b, r in zip(p["build"], p["run"])]
        print(f"  PSO run (timing on)       {us(p['run'], n)}")
        print(f"  PSO run (timing off)      {us(p_off['run'], n)}")
        print(f"  PSO build                 {us(p['build'], n)}")
        print(f"  PSO build + run           {us(total, n)}")
        print(f"  graphlib + ThreadPool     {us(tp, n)}")
        if dk is not None:
            print(f"  Dask threaded             {us(dk, n)}")
        pso_run = statistics.median(p["run"])
        print(f"  ThreadPool / PSO run: {statistics.median(tp) / pso_run:.1f}x", end="")
        if dk is not None:
            print(
                f"; Dask / PSO run: {statistics.median(dk) / pso_run:.1f}x; "
                f"Dask / PSO build+run: {statistics.median(dk) / statistics.median(total):.1f}x"
            )
        else:
            print()
        per_step = pso_run / n * 1e6
        goal = "MET" if per_step <= 3 else "MISSED"
        print(f"  goal <= 3 us/step (PSO run): {goal} ({per_step:.2f})", end="")
        if dk is not None:
            ratio = statistics.median(dk) / pso_run
            print(f"; goal >= 10x Dask: {'MET' if ratio >= 10 else 'MISSED'} ({ratio:.1f}x)")
        else:
            print()
        print()
    print(f"load average {os.getloadavg()[0]:.2f} at end")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
