"""The hub (docs/API.md, "Hub"): publish and subscribe with wildcards and
bad patterns, callbacks on workers, pull subscriptions (recv, for, async
for, Ctrl-C), queue groups, every overflow policy with its drop count and
alert, per-topic order, request/reply/NoResponders/timeouts/request_many,
request_async, releasing callbacks, direct channels and meshes, and close.

Nothing sleeps to wait for another thread: waits are on events with a bound
(a bound that passes fails the test), or, for a counter a worker bumps after
the callback returned, a bounded poll (`eventually`). A publish to a pull subscription has
queued the message when it returns, so reading it right after is not a race."""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import pso

BOUND = 10.0  # seconds: only a bug gets near this
CHILD_TIMEOUT = 30


def wait_for(event: threading.Event, what: str) -> None:
    assert event.wait(BOUND), f"timed out waiting for {what}"


def eventually(what: str, condition: Callable[[], bool]) -> None:
    """Polls `condition` (bounded) for effects that happen on another thread
    after the last thing a test can wait on: a worker counts a delivery only
    once the callback has returned, after the callback set its event."""
    end = time.monotonic() + BOUND
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.001)


def thread_name() -> str:
    """The OS name of the calling thread (Linux), or "?"."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def drain(sub: pso.Subscription) -> list[Any]:
    """Payloads queued for a pull subscription now."""
    out = []
    while (m := sub.try_recv()) is not None:
        out.append(m.payload)
    return out


class Collector:
    """A callback that records messages and sets an event at `n` of them."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.messages: list[pso.Message] = []
        self.threads: set[str] = set()
        self.done = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, m: pso.Message) -> None:
        with self.lock:
            self.messages.append(m)
            self.threads.add(thread_name())
            if len(self.messages) >= self.n:
                self.done.set()

    def payloads(self) -> list[Any]:
        with self.lock:
            return [m.payload for m in self.messages]


@pytest.fixture
def o() -> Iterator[pso.Orchestrator]:
    with pso.Orchestrator(workers=2) as orch:
        yield orch


@pytest.fixture
def hub(o: pso.Orchestrator) -> pso.Hub:
    return o.hub


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"child process hung for {CHILD_TIMEOUT}s; output: {e.stdout!r} {e.stderr!r}")


# --- publish, subscribe, patterns -------------------------------------------


def test_a_callback_gets_each_message_on_a_worker(hub: pso.Hub) -> None:
    got = Collector(3)
    with hub.subscribe("engine.*.done", got) as sub:
        assert (sub.kind, sub.pattern, sub.closed) == ("callback", "engine.*.done", False)
        assert hub.publish("engine.build.done", {"ok": True, "n": [1, 2.5, None]}, sender="PDT") == 1
        assert hub.publish("engine.test.done", b"\x00\xff") == 1
        assert hub.publish("engine.test.failed", 1) == 0  # nobody listens: not an error
        assert hub.publish("engine.deploy.done", "x") == 1
        wait_for(got.done, "three messages")
        m = got.messages[0]
        assert (m.topic, m.payload, m.sender, m.is_request) == (
            "engine.build.done",
            {"n": [1, 2.5, None], "ok": True},
            "PDT",
            False,
        )
        assert m.payload is m.payload  # converted once
        assert got.payloads()[1:] == [b"\x00\xff", "x"]
        assert got.messages[1].sender is None
        assert all(t.startswith("pso-worker") for t in got.threads), got.threads
        with pytest.raises(pso.InvalidArgumentError, match="not a request"):
            m.reply(1)
        assert "engine.build.done" in repr(m)
    assert sub.closed


def test_wildcards_match_one_token_or_the_rest(hub: pso.Hub) -> None:
    one = hub.subscribe("a.*.c")
    rest = hub.subscribe("a.>")
    exact = hub.subscribe("a.b.c")
    every = hub.subscribe(">")
    for topic in ["a.b.c", "a.x.c", "a.b", "a.b.c.d", "b.b.c", "a"]:
        hub.publish(topic, topic)
    assert drain(one) == ["a.b.c", "a.x.c"]
    assert drain(rest) == ["a.b.c", "a.x.c", "a.b", "a.b.c.d"]
    assert drain(exact) == ["a.b.c"]
    assert drain(every) == ["a.b.c", "a.x.c", "a.b", "a.b.c.d", "b.b.c", "a"]


@pytest.mark.parametrize(
    ("pattern", "token", "index"),
    [
        ("a.>.b", ">", 1),
        ("a.b*", "b*", 1),
        ("a..b", "", 1),
        ("x.y z", "y z", 1),
        ("", "", 0),
        ("*.>x", ">x", 1),
    ],
)
def test_a_bad_pattern_names_its_token_and_subscribes_nothing(
    hub: pso.Hub, pattern: str, token: str, index: int
) -> None:
    before = len(hub.subscriptions())
    with pytest.raises(pso.InvalidArgumentError) as e:
        hub.subscribe(pattern, lambda m: None)
    assert (getattr(e.value, "token"), getattr(e.value, "index")) == (token, index)
    assert f"token {index}: '{token}'" in str(e.value)
    assert getattr(e.value, "syntax") == "pattern"
    assert len(hub.subscriptions()) == before


def test_a_bad_topic_names_its_token_and_delivers_nothing(hub: pso.Hub) -> None:
    sub = hub.subscribe(">")
    for topic, token in [("a.*", "*"), ("a.>", ">"), ("a..b", ""), ("tab\t.x", "tab\t")]:
        with pytest.raises(pso.InvalidArgumentError) as e:
            hub.publish(topic, 1)
        assert getattr(e.value, "token") == token
        assert getattr(e.value, "syntax") == "topic"
    assert sub.try_recv() is None


def test_bad_arguments_raise_typed_errors_and_subscribe_nothing(hub: pso.Hub) -> None:
    before = len(hub.subscriptions())
    with pytest.raises(TypeError, match="callable"):
        hub.subscribe("a", 5)  # type: ignore[arg-type]
    with pytest.raises(pso.InvalidArgumentError, match="overflow must be"):
        hub.subscribe("a", overflow="sometimes")  # type: ignore[arg-type]
    with pytest.raises(pso.InvalidArgumentError, match="block_timeout only applies"):
        hub.subscribe("a", overflow="error", block_timeout=1.0)
    with pytest.raises(pso.InvalidArgumentError, match="at least 1"):
        hub.subscribe("a", capacity=0)
    with pytest.raises(TypeError, match="capacity must be an int"):
        hub.subscribe("a", capacity=True)
    with pytest.raises(pso.InvalidArgumentError, match="group"):
        hub.subscribe("a", group="")
    with pytest.raises(TypeError, match="PSO values"):
        hub.publish("a", object())  # type: ignore[arg-type]
    with pytest.raises(OverflowError):
        hub.publish("a", 2**70)
    assert len(hub.subscriptions()) == before


def test_subscription_status_shows_options_and_counters(hub: pso.Hub) -> None:
    sub = hub.subscribe("s.>", capacity=3, overflow="drop_newest", group="g", owner="PKM")
    for i in range(5):
        hub.publish("s.x", i)
    st = sub.status()
    assert (st.id, st.pattern, st.group, st.owner, st.kind) == (sub.id, "s.>", "g", "PKM", "pull")
    assert (st.queue_len, st.capacity, st.overflow, st.block_timeout) == (3, 3, "drop_newest", None)
    assert (st.dropped, st.delivered, st.errors, st.closed) == (2, 0, 0, False)
    sub.recv(timeout=1)
    assert sub.status().delivered == 1
    blocking = hub.subscribe("b", block_timeout=0.25)
    assert (blocking.status().overflow, blocking.status().block_timeout) == ("block", 0.25)
    assert [s.id for s in hub.subscriptions()] == sorted([sub.id, blocking.id])
    assert hub.unsubscribe(blocking.id) is True
    assert hub.unsubscribe(blocking.id) is False
    assert [s.id for s in hub.subscriptions()] == [sub.id]


# --- queue groups, overflow, order ------------------------------------------


def test_a_queue_group_gives_each_message_to_one_member(hub: pso.Hub) -> None:
    members = [hub.subscribe("jobs.*", group="workers") for _ in range(3)]
    everyone = hub.subscribe("jobs.*")
    for i in range(30):
        assert hub.publish("jobs.new", i) == 2  # one member plus the plain subscriber
    got = [drain(m) for m in members]
    assert sorted(p for g in got for p in g) == list(range(30))
    assert all(len(g) == 10 for g in got), got  # round robin while all have room
    assert drain(everyone) == list(range(30))


def test_drop_oldest_keeps_the_newest_and_counts_drops(hub: pso.Hub) -> None:
    sub = hub.subscribe("q", capacity=2, overflow="drop_oldest")
    for i in range(5):
        assert hub.publish("q", i) == 1  # still queued (after evicting)
    assert drain(sub) == [3, 4]
    assert sub.status().dropped == 3


def test_drop_newest_keeps_the_oldest_and_counts_drops(hub: pso.Hub) -> None:
    sub = hub.subscribe("q", capacity=2, overflow="drop_newest")
    results = [hub.publish("q", i) for i in range(5)]
    assert results == [1, 1, 0, 0, 0]
    assert drain(sub) == [0, 1]
    assert sub.status().dropped == 3


def test_error_refuses_with_queue_overflow_and_others_still_receive(hub: pso.Hub) -> None:
    full = hub.subscribe("q", capacity=2, overflow="error")
    other = hub.subscribe("q")
    hub.publish("q", 0)
    hub.publish("q", 1)
    with pytest.raises(pso.QueueOverflowError) as e:
        hub.publish("q", 2)
    err = e.value
    assert (err.topic, err.subscription, err.pattern, err.capacity, err.timed_out, err.delivered) == (
        "q",
        full.id,
        "q",
        2,
        False,
        1,
    )
    assert drain(full) == [0, 1]
    assert drain(other) == [0, 1, 2]
    assert full.status().dropped == 1


def test_block_waits_for_room_then_gives_up_with_overflow(hub: pso.Hub) -> None:
    sub = hub.subscribe("q", capacity=1, block_timeout=0.1)
    hub.publish("q", 0)
    start = time.monotonic()
    with pytest.raises(pso.QueueOverflowError) as e:
        hub.publish("q", 1)
    assert time.monotonic() - start >= 0.09
    assert e.value.timed_out is True
    assert sub.status().dropped == 1
    # A reader on another thread makes room: the blocked publisher goes on.
    sub2 = hub.subscribe("r", capacity=1, block_timeout=BOUND)
    got: list[Any] = []

    def reader() -> None:
        for _ in range(5):
            got.append(sub2.recv(timeout=BOUND).payload)

    t = threading.Thread(target=reader)
    t.start()
    for i in range(5):
        hub.publish("r", i)  # each waits until the reader took the previous one
    t.join(BOUND)
    assert got == [0, 1, 2, 3, 4]
    assert sub2.status().dropped == 0


@pytest.mark.parametrize(("owner", "alert"), [("PAES", "pso.alert.PAES.dropped"), (None, "pso.alert.hub.dropped")])
def test_drops_raise_an_alert_event(hub: pso.Hub, owner: str | None, alert: str) -> None:
    alerts = hub.subscribe("pso.alert.>")
    sub = hub.subscribe("q.>", capacity=1, overflow="drop_newest", owner=owner)
    hub.publish("q.a", 1)
    hub.publish("q.b", 2)
    hub.publish("q.c", 3)  # within the alert interval: counted, no second alert
    m = alerts.recv(timeout=BOUND)
    assert m.topic == alert
    p = m.payload
    assert (p["subscription"], p["pattern"], p["topic"], p["policy"], p["dropped"]) == (
        sub.id,
        "q.>",
        "q.b",
        "drop_newest",
        1,
    )
    assert p["owner"] == (owner or "hub")
    assert alerts.try_recv() is None  # rate-limited
    assert sub.status().dropped == 2


def test_messages_arrive_in_publish_order_per_topic(hub: pso.Hub) -> None:
    n = 2000
    got = Collector(2 * n)
    with hub.subscribe("order.*", got, capacity=4 * n):
        def publisher(topic: str) -> None:
            for i in range(n):
                hub.publish(topic, i)

        threads = [threading.Thread(target=publisher, args=(t,)) for t in ("order.a", "order.b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(BOUND)
        wait_for(got.done, "every message")
    by_topic: dict[str, list[int]] = {"order.a": [], "order.b": []}
    for m in got.messages:
        by_topic[m.topic].append(m.payload)
    assert by_topic["order.a"] == list(range(n))
    assert by_topic["order.b"] == list(range(n))


def test_callback_exceptions_are_counted_reported_and_delivery_goes_on(
    hub: pso.Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    done = threading.Event()
    ok: list[int] = []

    def flaky(m: pso.Message) -> None:
        if m.payload % 2:
            raise ValueError(f"odd {m.payload}")
        ok.append(m.payload)
        if m.payload == 8:
            done.set()

    sub = hub.subscribe("f", flaky)
    for i in range(9):
        hub.publish("f", i)
    wait_for(done, "the last message")
    assert ok == [0, 2, 4, 6, 8]
    assert [str(u.exc_value) for u in seen] == ["odd 1", "odd 3", "odd 5", "odd 7"]
    assert all(u.object is flaky for u in seen)
    eventually("the fifth delivery to be counted", lambda: sub.status().delivered == 5)
    st = sub.status()
    assert (st.errors, st.delivered) == (4, 5)


def test_a_callback_returning_a_coroutine_is_reported(hub: pso.Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)

    async def work(m: pso.Message) -> None:
        pass

    sub = hub.subscribe("c", lambda m: work(m))
    hub.publish("c", 1)
    end = time.monotonic() + BOUND
    while sub.status().errors == 0:
        assert time.monotonic() < end, "the callback never ran"
        time.sleep(0.001)
    assert isinstance(seen[0].exc_value, TypeError)
    assert "subscribe an `async def` function itself" in str(seen[0].exc_value)


def test_many_threads_publishing_to_a_callback(hub: pso.Hub) -> None:
    threads, per = 8, 500
    total = threads * per
    count = [0]
    lock = threading.Lock()
    done = threading.Event()

    def cb(m: pso.Message) -> None:
        with lock:
            count[0] += m.payload
            if count[0] == total:
                done.set()

    with hub.subscribe("t.*", cb, capacity=64):
        barrier = threading.Barrier(threads)

        def publish(k: int) -> None:
            barrier.wait()
            for _ in range(per):
                hub.publish(f"t.{k}", 1)

        ts = [threading.Thread(target=publish, args=(k,)) for k in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(BOUND)
        wait_for(done, "every message")
    assert count[0] == total


# --- pull subscriptions -----------------------------------------------------


def test_recv_waits_times_out_and_try_recv_does_not_wait(hub: pso.Hub) -> None:
    sub = hub.subscribe("p")
    assert sub.try_recv() is None
    start = time.monotonic()
    with pytest.raises(pso.TimeoutError) as e:
        sub.recv(timeout=0.05)
    assert isinstance(e.value, TimeoutError)
    assert 0.04 <= time.monotonic() - start < BOUND
    assert "'p'" in str(e.value)
    threading.Timer(0.02, hub.publish, ("p", "late")).start()
    assert sub.recv(timeout=BOUND).payload == "late"
    with pytest.raises(pso.InvalidArgumentError, match="at least 0"):
        sub.recv(timeout=-1)
    cb = hub.subscribe("p2", lambda m: None)
    with pytest.raises(pso.InvalidArgumentError, match="delivers to a callback"):
        cb.recv(timeout=0)


def test_waiting_does_not_poll(hub: pso.Hub) -> None:
    """A blocked recv, and an idle `async for`, use (almost) no CPU."""
    sub = hub.subscribe("idle")
    cpu = time.process_time()
    with pytest.raises(pso.TimeoutError):
        sub.recv(timeout=0.5)
    assert time.process_time() - cpu < 0.1

    async def main() -> float:
        async def reader() -> None:
            async for _ in sub:
                break

        task = asyncio.create_task(reader())
        await asyncio.sleep(0.05)  # the reader is waiting now
        start = time.process_time()
        await asyncio.sleep(0.5)
        used = time.process_time() - start
        hub.publish("idle", 1)
        await asyncio.wait_for(task, BOUND)
        return used

    assert asyncio.run(main()) < 0.1


def test_for_loop_ends_when_unsubscribed(hub: pso.Hub) -> None:
    sub = hub.subscribe("it")
    for i in range(3):
        hub.publish("it", i)
    got = []
    for m in sub:
        got.append(m.payload)
        if len(got) == 3:
            threading.Timer(0.02, sub.unsubscribe).start()
    assert got == [0, 1, 2]
    assert sub.closed
    with pytest.raises(pso.ClosedError):
        sub.recv(timeout=0)
    assert hub.publish("it", 4) == 0


def test_async_for_gets_messages_in_order_without_blocking_the_loop(hub: pso.Hub) -> None:
    sub = hub.subscribe("aio.*")

    async def main() -> tuple[list[Any], int]:
        ticks = 0

        def later() -> None:
            for i in range(1, 50):
                hub.publish("aio.x", i)

        # The rest is published only after the ticker has run 5 times while
        # the reader waits: if waiting blocked the loop, nothing would come
        # (and wait_for below fails instead of hanging).
        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                if ticks == 5:
                    threading.Thread(target=later).start()
                await asyncio.sleep(0.001)

        got: list[Any] = []
        hub.publish("aio.x", 0)  # already queued before the loop starts reading

        async def read() -> None:
            async for m in sub:
                got.append(m.payload)
                if len(got) == 50:
                    break

        t = asyncio.create_task(ticker())
        await asyncio.wait_for(read(), 60)
        t.cancel()
        return got, ticks

    got, ticks = asyncio.run(main())
    assert got == list(range(50))
    assert ticks >= 5  # the loop ran while it waited


def test_a_cancelled_async_read_loses_no_message(hub: pso.Hub) -> None:
    sub = hub.subscribe("c")

    async def main() -> list[Any]:
        waiter = asyncio.ensure_future(sub.__anext__())
        await asyncio.sleep(0.02)  # the pump is waiting in core now
        waiter.cancel()
        hub.publish("c", 1)  # may reach the stash after the cancel
        hub.publish("c", 2)
        got = [(await asyncio.wait_for(sub.__anext__(), BOUND)).payload]
        got.append(sub.recv(timeout=BOUND).payload)
        return got

    assert asyncio.run(main()) == [1, 2]


def test_async_for_ends_when_unsubscribed(hub: pso.Hub) -> None:
    sub = hub.subscribe("e")

    async def main() -> list[Any]:
        got = []
        asyncio.get_running_loop().call_later(0.05, sub.unsubscribe)
        async for m in sub:
            got.append(m.payload)  # pragma: no cover - nothing is published
        return got

    assert asyncio.run(asyncio.wait_for(main(), BOUND)) == []


def test_ctrl_c_interrupts_recv() -> None:
    result = run_python(
        """
        import os, signal, threading, time, pso

        o = pso.Orchestrator(workers=1)
        sub = o.hub.subscribe("never")
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
        start = time.monotonic()
        try:
            sub.recv()
            print("not interrupted")
        except KeyboardInterrupt:
            print("interrupted", time.monotonic() - start < 5)
        o.hub.publish("never", 1)
        print("still works", sub.recv(timeout=5).payload)
        o.close()
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["interrupted True", "still works 1"]


# --- requests ---------------------------------------------------------------


def test_request_reply(hub: pso.Hub) -> None:
    seen: list[tuple[str | None, bool]] = []

    def double(m: pso.Message) -> None:
        seen.append((m.sender, m.is_request))
        assert m.reply(m.payload * 2) is True
        assert m.reply(0) is False  # the requester took the first reply

    with hub.subscribe("math.double", double):
        r = hub.request("math.double", 21, sender="PAES")
        assert (r.payload, r.topic, r.is_request) == (42, "math.double", False)
        assert hub.request("math.double", 2, 5.0).payload == 4
    assert seen == [("PAES", True), (None, True)]


def test_no_responders_is_immediate_and_distinct_from_timeout(hub: pso.Hub) -> None:
    start = time.monotonic()
    with pytest.raises(pso.NoRespondersError) as e:
        hub.request("nobody.home", 1, timeout=5.0)
    assert time.monotonic() - start < 1.0
    assert e.value.topic == "nobody.home"
    assert not isinstance(e.value, TimeoutError)
    silent = hub.subscribe("quiet", lambda m: None)  # takes it, never replies
    with pytest.raises(pso.NoRespondersError) as e2:
        hub.request("quiet", 1, timeout=5.0)  # dropped by its only receiver
    assert getattr(e2.value, "receivers") == 1
    silent.unsubscribe()
    holder = hub.subscribe("slow")  # a pull subscriber that never reads
    start = time.monotonic()
    with pytest.raises(pso.TimeoutError) as e3:
        hub.request("slow", 1, timeout=0.1)
    assert 0.09 <= time.monotonic() - start < BOUND
    assert isinstance(e3.value, TimeoutError)
    assert getattr(e3.value, "topic") == "slow"
    holder.unsubscribe()
    with pytest.raises(pso.InvalidArgumentError, match="more than 0"):
        hub.request("slow", 1, timeout=0)


def test_a_pull_subscriber_can_reply(hub: pso.Hub) -> None:
    sub = hub.subscribe("svc")

    def serve() -> None:
        m = sub.recv(timeout=BOUND)
        m.reply({"echo": m.payload})

    t = threading.Thread(target=serve)
    t.start()
    assert hub.request("svc", "hi", timeout=BOUND).payload == {"echo": "hi"}
    t.join(BOUND)


def test_request_many_gathers_until_max_quiet_or_timeout(hub: pso.Hub) -> None:
    def responder(i: int) -> Callable[[pso.Message], object]:
        return lambda m: m.reply(i)

    subs = [hub.subscribe("census", responder(i)) for i in range(3)]
    replies = hub.request_many("census", None, timeout=BOUND, quiet=0.2)
    assert sorted(r.payload for r in replies) == [0, 1, 2]
    assert len(hub.request_many("census", None, timeout=BOUND, max=2)) == 2
    # Every receiver replied and let go of it: no need to wait for the timeout.
    start = time.monotonic()
    assert len(hub.request_many("census", None, timeout=BOUND)) == 3
    assert time.monotonic() - start < BOUND / 2
    with pytest.raises(pso.NoRespondersError):
        hub.request_many("nobody", None, timeout=1.0)
    with pytest.raises(pso.InvalidArgumentError, match="at least 1"):
        hub.request_many("census", None, timeout=1.0, max=0)
    del subs


def test_request_async_does_not_block_the_loop(hub: pso.Hub) -> None:
    release = threading.Event()

    def slow(m: pso.Message) -> None:
        release.wait(BOUND)
        m.reply("done")

    sub = hub.subscribe("slow", slow)

    async def main() -> tuple[str, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                if ticks == 20:
                    release.set()
                await asyncio.sleep(0.001)

        t = asyncio.create_task(ticker())
        reply = await asyncio.create_task(hub.request_async("slow", 1, timeout=BOUND))
        t.cancel()
        with pytest.raises(pso.NoRespondersError):
            await hub.request_async("nobody", 1)
        return reply.payload, ticks

    payload, ticks = asyncio.run(main())
    assert payload == "done"
    assert ticks >= 20
    sub.unsubscribe()


# --- releasing callbacks ----------------------------------------------------


def test_unsubscribe_releases_the_callback(hub: pso.Hub) -> None:
    class Handler:
        def __call__(self, m: pso.Message) -> None:
            pass

    h = Handler()
    ref = weakref.ref(h)
    sub = hub.subscribe("r", h)
    del h
    assert ref() is not None  # the subscription holds it
    assert sub.unsubscribe() is True
    assert ref() is None  # released at once (no collection needed)
    assert sub.unsubscribe() is False
    assert hub.publish("r", 1) == 0


def test_a_dropped_subscription_unsubscribes_and_releases(hub: pso.Hub) -> None:
    class Handler:
        def __call__(self, m: pso.Message) -> None:
            pass

    h = Handler()
    ref = weakref.ref(h)
    sub = hub.subscribe("g", h)
    del h, sub
    assert ref() is None
    assert hub.publish("g", 1) == 0
    assert hub.subscriptions() == []


def test_a_callback_that_refers_to_its_subscription_is_collected(hub: pso.Hub) -> None:
    holder: dict[str, Any] = {}

    def cb(m: pso.Message) -> None:
        holder["sub"].status()

    ref = weakref.ref(cb)
    holder["sub"] = hub.subscribe("cyc", cb)
    del cb, holder
    gc.collect()
    assert ref() is None
    assert hub.subscriptions() == []


def test_unsubscribing_during_a_call_lets_it_finish_then_releases(hub: pso.Hub) -> None:
    entered, release, finished = threading.Event(), threading.Event(), threading.Event()
    calls = [0]

    class Handler:
        def __call__(self, m: pso.Message) -> None:
            calls[0] += 1
            entered.set()
            release.wait(BOUND)
            finished.set()

    h = Handler()
    ref = weakref.ref(h)
    sub = hub.subscribe("u", h)
    del h
    hub.publish("u", 1)
    hub.publish("u", 2)  # queued behind the running call
    wait_for(entered, "the call")
    sub.unsubscribe()
    assert ref() is not None  # the running call still uses it
    release.set()
    wait_for(finished, "the call to return")
    end = time.monotonic() + BOUND
    while ref() is not None:  # released on the worker right after the call
        assert time.monotonic() < end, "the callback was never released"
        time.sleep(0.001)
    assert calls[0] == 1  # the queued message was dropped


def test_async_def_callbacks_run_in_order_on_the_subscribing_loop(
    hub: pso.Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)

    async def main() -> tuple[list[Any], set[str]]:
        done = asyncio.Event()
        got: list[Any] = []
        threads: set[str] = set()

        async def cb(m: pso.Message) -> None:
            threads.add(threading.current_thread().name)
            await asyncio.sleep(0.001 * (5 - m.payload))  # later ones are quicker
            if m.payload == 2:
                raise ValueError("two")
            got.append(m.payload)
            if m.payload == 4:
                done.set()

        with hub.subscribe("a", cb):
            for i in range(5):
                hub.publish("a", i)
            await asyncio.wait_for(done.wait(), BOUND)
        return got, threads

    got, threads = asyncio.run(main())
    assert got == [0, 1, 3, 4]  # one at a time, in order
    assert threads == {"MainThread"}
    assert [str(u.exc_value) for u in seen] == ["two"]


def test_async_def_callback_outside_a_loop_runs_on_the_background_loop(hub: pso.Hub) -> None:
    done = threading.Event()
    where: list[str] = []

    async def cb(m: pso.Message) -> None:
        await asyncio.sleep(0)
        where.append(threading.current_thread().name)
        done.set()

    with hub.subscribe("bg", cb):
        hub.publish("bg", 1)
        wait_for(done, "the coroutine")
    assert where == ["pso-asyncio"]


# --- direct channels and meshes ---------------------------------------------


def test_a_direct_channel_carries_values_both_ways() -> None:
    with pso.Orchestrator(workers=2, hub={"direct_capacity": 2}) as o:
        hub = o.hub
        hub.open_direct("PAES", "PPO", "declared in the test")
        with pytest.raises(pso.AlreadyExistsError):
            hub.open_direct("PPO", "PAES")
        paes = hub.endpoint("PAES", "PPO")
        ppo = hub.endpoint("PPO", "PAES")
        with pytest.raises(pso.AlreadyExistsError):
            hub.endpoint("PAES", "PPO")
        with pytest.raises(pso.NotFoundError):
            hub.endpoint("PAES", "PKM")
        assert (paes.system, paes.peer, paes.capacity, paes.closed) == ("PAES", "PPO", 2, False)
        assert paes.try_send({"v": 1}) is True
        assert paes.try_send(None) is True
        assert paes.try_send(3) is False  # full
        missing = object()
        assert ppo.recv(timeout=BOUND) == {"v": 1}
        assert ppo.try_recv(missing) is None  # a None value, not "nothing"
        assert ppo.try_recv(missing) is missing
        ppo.send([1, 2])
        assert paes.recv(timeout=BOUND) == [1, 2]
        with pytest.raises(pso.TimeoutError):
            paes.recv(timeout=0.02)
        paes.send(1)
        paes.send(2)
        start = time.monotonic()
        with pytest.raises(pso.TimeoutError) as e:
            paes.send(3, timeout=0.05)  # stays full
        assert time.monotonic() - start >= 0.04
        assert getattr(e.value, "value") == 3
        st = o.coordination_status()
        assert st.mode == "direct"
        pair = st.direct_pairs[0]
        assert (pair.a, pair.b, pair.mode, pair.origin, pair.reason) == (
            "PAES", "PPO", "direct", "declared", "declared in the test"
        )
        assert (pair.sent_ab, pair.queued_ab, pair.endpoints_taken) == (4, 2, (True, True))
        paes.close()
        assert ppo.closed
        assert [ppo.recv(timeout=BOUND), ppo.recv(timeout=BOUND)] == [1, 2]  # drains first
        with pytest.raises(pso.ClosedError) as c:
            ppo.recv(timeout=BOUND)
        assert getattr(c.value, "reason") == "closed by PAES"
        payload = {"keep": "me"}
        with pytest.raises(pso.ClosedError) as c2:
            ppo.send(payload)
        assert getattr(c2.value, "value") is payload  # handed back, to publish instead
        assert o.coordination_status().pair_mode("PAES", "PPO") == "hierarchical"


def test_a_direct_end_is_iterable_until_closed(hub: pso.Hub) -> None:
    hub.promote("a", "b", "hot")
    a, b = hub.endpoint("a", "b"), hub.endpoint("b", "a")
    for i in range(3):
        a.send(i)
    threading.Timer(0.02, a.close).start()
    assert list(b) == [0, 1, 2]
    with pytest.raises(pso.NotFoundError):
        hub.demote("a", "b")  # closed with its end: nothing to demote


def test_a_mesh_gives_every_pair_a_channel_for_its_scope(o: pso.Orchestrator) -> None:
    hub = o.hub
    with hub.mesh(["A", "B", "C", "A"]) as m:
        assert m.systems == ["A", "B", "C"]
        st = o.coordination_status()
        assert st.mode == "mesh"
        assert [ms.systems for ms in st.meshes] == [["A", "B", "C"]]
        assert st.meshes[0].id == m.id
        assert {st.pair_mode(x, y) for x, y in [("A", "B"), ("A", "C"), ("C", "B")]} == {"mesh"}
        ab, ba = m.endpoint("A", "B"), m.endpoint("B", "A")
        ab.send("hi")
        assert ba.recv(timeout=BOUND) == "hi"
    assert m.closed and ab.closed
    st = o.coordination_status()
    assert (st.mode, st.meshes, st.pair_mode("A", "C")) == ("hierarchical", [], "hierarchical")
    with pytest.raises(pso.ClosedError):
        m.endpoint("A", "C")
    with pytest.raises(pso.InvalidArgumentError):
        hub.mesh(["solo"])
    with pytest.raises(TypeError):
        hub.mesh("AB")


# --- close ------------------------------------------------------------------


def test_close_stops_delivery_and_releases_callbacks() -> None:
    o = pso.Orchestrator(workers=2)
    hub = o.hub

    class Handler:
        def __call__(self, m: pso.Message) -> None:
            pass

    h = Handler()
    ref = weakref.ref(h)
    sub = hub.subscribe("x", h)
    pull = hub.subscribe("y")
    hub.publish("y", 1)
    del h
    o.close()
    assert ref() is None
    assert hub.closed
    for call in (
        lambda: hub.publish("x", 1),
        lambda: hub.subscribe("x"),
        lambda: hub.request("x", 1),
        lambda: pull.recv(timeout=0),
        lambda: o.hub,
        lambda: o.state,
        lambda: o.coordination_status(),
    ):
        with pytest.raises(pso.ClosedError):
            call()
    assert sub.closed
    assert sub.unsubscribe() is False
