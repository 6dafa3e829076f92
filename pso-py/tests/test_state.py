"""The state store (docs/API.md, "State store"): entries with revision,
writer and time; compare-and-set conflicts with the current entry; update
retried without losing updates across threads; watches delivering exactly
the changes after a revision, in order, as iterables and async iterables;
Compacted; snapshot/restore, atomic on both sides."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import pso

BOUND = 10.0


@pytest.fixture
def o() -> Iterator[pso.Orchestrator]:
    with pso.Orchestrator(workers=2) as orch:
        yield orch


@pytest.fixture
def st(o: pso.Orchestrator) -> pso.StateStore:
    return o.state


# --- reads and writes -------------------------------------------------------


def test_put_get_list_delete(st: pso.StateStore) -> None:
    assert st.revision == 0
    assert st.get("model.version") is None
    before = datetime.datetime.now(datetime.timezone.utc)
    r1 = st.put("model.version", 1, writer="PAES")
    r2 = st.put("model.name", "resnet")
    r3 = st.put("other", {"nested": [1, b"\x00", None, 2.5]})
    assert (r1, r2, r3) == (1, 2, 3)
    assert st.revision == 3
    e = st.get("model.version")
    assert e is not None
    assert (e.key, e.value, e.revision, e.writer) == ("model.version", 1, 1, "PAES")
    assert e.timestamp.tzinfo is not None and e.timestamp >= before - datetime.timedelta(seconds=1)
    other = st.get("other")
    assert other is not None and other.value == {"nested": [1, b"\x00", None, 2.5]}
    assert [x.key for x in st.list("model.")] == ["model.name", "model.version"]
    assert [x.key for x in st.list()] == ["model.name", "model.version", "other"]
    assert st.delete("model.name", writer="PKM") == 4
    assert st.delete("model.name") is None  # absent: nothing changed
    assert st.revision == 4
    assert st.get("model.name") is None
    assert "model.version" in repr(e)


def test_bad_input_raises_and_writes_nothing(st: pso.StateStore) -> None:
    st.put("k", 1)
    rev = st.revision
    with pytest.raises(pso.InvalidArgumentError, match="empty"):
        st.put("", 1)
    with pytest.raises(TypeError, match="PSO values"):
        st.put("k", object())  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        st.put("k", 2**64)
    with pytest.raises(TypeError, match="revision"):
        st.compare_and_set("k", "1", 2)  # type: ignore[arg-type]
    with pytest.raises(pso.InvalidArgumentError, match="at least 0"):
        st.compare_and_set("k", -1, 2)
    with pytest.raises(TypeError):
        st.update("k", 5)  # type: ignore[arg-type]
    with pytest.raises(pso.InvalidArgumentError):
        st.watch("")
    assert st.revision == rev
    e = st.get("k")
    assert e is not None and e.value == 1


# --- compare-and-set --------------------------------------------------------


def test_compare_and_set_and_its_conflicts(st: pso.StateStore) -> None:
    r1 = st.compare_and_set("lock", 0, "a", writer="A")  # 0: only if absent
    with pytest.raises(pso.CasConflictError) as e:
        st.compare_and_set("lock", 0, "b", writer="B")
    err = e.value
    assert (err.key, err.expected, err.revision) == ("lock", 0, r1)
    assert err.current is not None
    assert (err.current.value, err.current.writer, err.current.revision) == ("a", "A", r1)
    assert f"found {r1}" in str(err)
    r2 = st.compare_and_set("lock", r1, "b", writer="B")
    assert r2 > r1
    with pytest.raises(pso.CasConflictError) as stale:
        st.compare_and_set("lock", r1, "c")
    assert stale.value.revision == r2
    with pytest.raises(pso.CasConflictError) as absent:
        st.compare_and_set("missing", 7, 1)
    assert (absent.value.current, absent.value.revision) == (None, 0)
    with pytest.raises(pso.CasConflictError):
        st.compare_and_delete("lock", r1)
    assert st.compare_and_delete("lock", r2) > r2
    assert st.get("lock") is None


def test_update_retries_on_conflict_and_an_exception_writes_nothing(st: pso.StateStore) -> None:
    st.put("n", 1)
    calls: list[Any] = []

    def bump(v: Any) -> Any:
        calls.append(v)
        if len(calls) == 1:
            st.put("n", 10)  # someone else wins the race
        return v + 1

    rev = st.update("n", bump, writer="W")
    assert calls == [1, 10]  # called again with the newer value
    e = st.get("n")
    assert e is not None and (e.value, e.revision, e.writer) == (11, rev, "W")
    assert st.update("fresh", lambda v: "created" if v is None else "seen") == st.revision
    fresh = st.get("fresh")
    assert fresh is not None and fresh.value == "created"

    def boom(v: Any) -> Any:
        raise KeyError("nope")

    with pytest.raises(KeyError):
        st.update("n", boom)
    with pytest.raises(TypeError, match="update's fn"):
        st.update("n", lambda v: {1: 2})  # type: ignore[dict-item]
    e2 = st.get("n")
    assert e2 is not None and e2.revision == rev  # nothing written


def test_no_update_is_lost_across_threads(st: pso.StateStore) -> None:
    threads, per = 8, 200
    barrier = threading.Barrier(threads)
    retries = [0]
    lock = threading.Lock()

    def work(i: int) -> None:
        barrier.wait()
        for _ in range(per):
            if i % 2:
                st.update("counter", lambda v: (v or 0) + 1)
            else:  # a hand-written CAS loop
                while True:
                    e = st.get("counter")
                    try:
                        st.compare_and_set("counter", e.revision if e else 0, (e.value if e else 0) + 1)
                        break
                    except pso.CasConflictError:
                        with lock:
                            retries[0] += 1

    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(BOUND)
    e = st.get("counter")
    assert e is not None
    assert e.value == threads * per
    assert e.revision == st.revision == threads * per


# --- watches ----------------------------------------------------------------


def test_a_watch_delivers_exactly_the_changes_after_its_revision(st: pso.StateStore) -> None:
    st.put("jobs.1", "queued")
    start = st.revision
    st.put("jobs.1", "running", writer="W")
    st.put("other", 0)
    st.put("jobs.2", "queued")
    st.delete("jobs.1")
    with st.watch("jobs.", prefix=True, from_revision=start) as w:
        events = [w.recv(timeout=BOUND) for _ in range(3)]
        assert [(e.revision, e.key, e.value, e.is_delete) for e in events] == [
            (2, "jobs.1", "running", False),
            (4, "jobs.2", "queued", False),
            (5, "jobs.1", None, True),
        ]
        assert events[0].writer == "W" and events[0].timestamp.tzinfo is not None
        assert w.try_recv() is None
        st.put("jobs.3", 1)
        st.put("job", 1)  # not under the prefix
        nxt = w.recv(timeout=BOUND)
        assert (nxt.key, nxt.revision) == ("jobs.3", 6)
        with pytest.raises(pso.TimeoutError):
            w.recv(timeout=0.02)
    assert w.closed
    one = st.watch("jobs.2")  # a single key, everything retained
    assert [e.revision for e in [one.recv(timeout=BOUND)]] == [4]
    assert one.try_recv() is None


def test_watch_is_exactly_once_in_order_under_concurrent_writers(st: pso.StateStore) -> None:
    writers, per = 4, 300
    w = st.watch("c.", prefix=True, from_revision=st.revision)
    barrier = threading.Barrier(writers)

    def write(i: int) -> None:
        barrier.wait()
        for j in range(per):
            st.put(f"c.{i}", j)

    ts = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in ts:
        t.start()
    events = [w.recv(timeout=BOUND) for _ in range(writers * per)]
    for t in ts:
        t.join(BOUND)
    revs = [e.revision for e in events]
    assert revs == sorted(set(revs))  # strictly increasing: in order, no repeat
    assert revs == list(range(revs[0], revs[0] + writers * per))  # no gap
    for i in range(writers):
        assert [e.value for e in events if e.key == f"c.{i}"] == list(range(per))
    assert w.try_recv() is None


def test_iterating_a_watch_ends_when_it_is_closed(st: pso.StateStore) -> None:
    w = st.watch("k", from_revision=st.revision)
    for i in range(3):
        st.put("k", i)
    got = []
    for e in w:
        got.append(e.value)
        if len(got) == 3:
            threading.Timer(0.02, w.close).start()
    assert got == [0, 1, 2]
    with pytest.raises(pso.ClosedError):
        w.recv(timeout=0)


def test_async_for_over_a_watch(st: pso.StateStore) -> None:
    async def main() -> list[Any]:
        w = st.watch("a", from_revision=st.revision)
        got = []

        def writes() -> None:
            for i in range(20):
                st.put("a", i)

        asyncio.get_running_loop().call_later(0.02, lambda: threading.Thread(target=writes).start())
        async for e in w:
            got.append(e.value)
            if len(got) == 20:
                w.close()
        return got

    assert asyncio.run(asyncio.wait_for(main(), BOUND)) == list(range(20))


def test_history_too_old_is_compacted(st: pso.StateStore) -> None:
    for i in range(100):  # 64 changes per key are kept
        st.put("hot", i)
    with pytest.raises(pso.CompactedError) as e:
        st.watch("hot", from_revision=1)
    assert (e.value.requested, e.value.oldest) == (1, 36)
    w = st.watch("hot", from_revision=36)
    assert w.recv(timeout=BOUND).revision == 37


def test_a_watcher_that_falls_behind_further_than_history_ends_compacted(st: pso.StateStore) -> None:
    w = st.watch("lag", from_revision=st.revision)
    for i in range(1024 + 200):  # more than its queue, and than the key's history
        st.put("lag", i)
    got = 0
    with pytest.raises(pso.CompactedError):
        while True:
            w.recv(timeout=BOUND)
            got += 1
    assert got == 1024  # everything queued came first, then the error


# --- snapshots --------------------------------------------------------------


def test_snapshot_and_restore_round_trip(st: pso.StateStore, tmp_path: pathlib.Path) -> None:
    st.put("a", {"x": [1, 2]}, writer="PAES")
    st.put("b", b"\x01")
    st.delete("b")
    st.put("c", float("inf"))
    path = tmp_path / "state.json"
    info = st.snapshot(path)
    assert (info.path, info.revision, info.entries) == (path, 4, 2)
    assert info.bytes == path.stat().st_size > 0
    assert json.loads(path.read_text())["revision"] == 4
    with pso.Orchestrator(workers=1) as other:
        other.state.put("z", 1)
        watch = other.state.watch("z", from_revision=0)
        assert watch.recv(timeout=BOUND).value == 1
        back = other.state.restore(str(path))
        assert (back.revision, back.entries) == (4, 2)
        entries = {e.key: (e.value, e.revision, e.writer) for e in other.state.list()}
        assert entries == {"a": ({"x": [1, 2]}, 1, "PAES"), "c": (float("inf"), 4, None)}
        assert other.state.revision == 4
        assert other.state.put("d", 1) == 5  # never moves back
        with pytest.raises(pso.ClosedError):
            watch.recv(timeout=BOUND)  # live watches end with the restore
        with pytest.raises(pso.CompactedError):
            other.state.watch("a", from_revision=0)  # history is not in a snapshot


def test_a_bad_snapshot_changes_nothing(st: pso.StateStore, tmp_path: pathlib.Path) -> None:
    st.put("keep", 1)
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "pso-state", "version": 1, "entries": [')
    with pytest.raises(pso.ParseError) as e:
        st.restore(bad)
    assert getattr(e.value, "path") == str(bad)
    with pytest.raises(pso.IoError) as e2:
        st.restore(tmp_path / "missing.json")
    assert isinstance(e2.value, OSError)
    with pytest.raises(pso.IoError):
        st.snapshot(tmp_path / "no" / "such" / "dir.json")
    assert [(x.key, x.value) for x in st.list()] == [("keep", 1)]
    assert st.revision == 1


def test_a_restore_is_seen_whole_by_concurrent_readers(o: pso.Orchestrator, tmp_path: pathlib.Path) -> None:
    st = o.state
    n = 2000
    for i in range(n):
        st.put(f"k{i:05}", "new")
    path = tmp_path / "new.json"
    st.snapshot(path)
    for i in range(n):
        st.put(f"k{i:05}", "old")
    mixed: list[set[str]] = []
    stop = threading.Event()
    seen_new = threading.Event()

    def read() -> None:
        while not stop.is_set():
            values = {e.value for e in st.list("k")}
            if len(values) != 1:
                mixed.append(values)
            if values == {"new"}:
                seen_new.set()

    readers = [threading.Thread(target=read) for _ in range(3)]
    for r in readers:
        r.start()
    st.restore(path)
    assert seen_new.wait(BOUND)
    stop.set()
    for r in readers:
        r.join(BOUND)
    assert mixed == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE / SIGXFSZ")
@pytest.mark.parametrize("how", ["killed", "failed"])
def test_a_crash_or_failure_while_writing_a_snapshot_keeps_the_previous_one(
    tmp_path: pathlib.Path, how: str
) -> None:
    """A child writes a large snapshot over a small one, with a file size
    limit that stops it in the middle of the write: killed by SIGXFSZ (a
    crash at that exact point) or, with the signal ignored, failing with
    EFBIG. The previous snapshot must be intact either way."""
    path = tmp_path / "snap.json"
    code = textwrap.dedent(
        f"""
        import resource, signal, pso
        o = pso.Orchestrator(workers=1)
        o.state.put("old", 1)
        o.state.snapshot({str(path)!r})
        for i in range(2000):
            o.state.put(f"k{{i}}", "x" * 1024)
        # Python ignores SIGXFSZ; its default action kills the process.
        if {how!r} == "killed":
            signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))
        try:
            o.state.snapshot({str(path)!r})
            print("written")
        except pso.IoError as e:
            print("IoError", type(e).__mro__[2].__name__)
        """
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name != "snap.json")
    if how == "killed":
        assert child.returncode == -signal.SIGXFSZ, (child.returncode, child.stderr)
        assert len(leftovers) == 1 and ".snap.json.tmp-" in leftovers[0], leftovers
        assert (tmp_path / leftovers[0]).stat().st_size == 256 * 1024  # stopped mid-write
    else:
        assert child.returncode == 0, child.stderr
        assert child.stdout.strip() == "IoError OSError"
        assert leftovers == []  # a failed write removes its temporary file
    with pso.Orchestrator(workers=1) as o:
        info = o.state.restore(path)
        assert info.entries == 1
        e = o.state.get("old")
        assert e is not None and e.value == 1
