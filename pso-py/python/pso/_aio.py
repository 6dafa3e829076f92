"""Asyncio plumbing of the binding (private; used by the native module).

* ``background_loop()``: the binding's own event loop, on a daemon thread
  named ``pso-asyncio`` (started on first use, again in a forked child).
  ``async def`` step functions of runs started outside a coroutine, and
  ``async def`` hub callbacks subscribed outside one, run there.
* ``StepTask``: one awaitable returned by a step function, run as a task on a
  loop; its outcome goes to the step's completion (a native callable).
* ``SerialRunner``: the coroutines of one ``async def`` subscription
  callback, run one at a time in message order on one loop.
* ``in_thread(fn)``: a coroutine that runs a blocking native call in the
  loop's default executor (``Hub.request_async``).

Everything that touches a loop from another thread goes through
``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import collections
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_pid = 0


def background_loop() -> asyncio.AbstractEventLoop:
    """The binding's event loop (see the module docs), started if needed."""
    global _loop, _pid
    with _lock:
        if _loop is None or _pid != os.getpid() or _loop.is_closed():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            threading.Thread(target=run, name="pso-asyncio", daemon=True).start()
            ready.wait()
            _loop, _pid = loop, os.getpid()
        return _loop


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The loop running in this thread, if any (no exception if none)."""
    return asyncio._get_running_loop()


# Outcome kinds passed to a step's completion.
RESULT = 0
RAISED = 1
CANCELLED = 2


class StepTask:
    """Runs one step's awaitable as a task and reports how it ended, once.

    Created on a PSO worker; ``start`` and ``cancel`` run on the loop (both
    scheduled with ``call_soon_threadsafe``, so a cancel scheduled before the
    start is seen by it)."""

    __slots__ = ("aw", "complete", "task", "cancelled")

    def __init__(self, aw: Awaitable[Any], complete: Callable[[int, object], None]) -> None:
        self.aw: Awaitable[Any] | None = aw
        self.complete: Callable[[int, object], None] | None = complete
        self.task: asyncio.Future[Any] | None = None
        self.cancelled = False

    def _report(self, kind: int, value: object) -> None:
        complete, self.complete = self.complete, None
        if complete is not None:
            complete(kind, value)

    def start(self) -> None:
        aw, self.aw = self.aw, None
        if aw is None:
            return
        if self.cancelled:
            close = getattr(aw, "close", None)
            if close is not None:
                close()  # no "coroutine was never awaited" warning
            self._report(CANCELLED, None)
            return
        try:
            task = asyncio.ensure_future(aw)
        except BaseException as e:  # not awaitable after all, wrong loop...
            self._report(RAISED, e)
            return
        self.task = task
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[Any]) -> None:
        self.task = None
        if task.cancelled():
            self._report(CANCELLED, None)
            return
        exc = task.exception()
        if exc is not None:
            self._report(RAISED, exc)
        else:
            self._report(RESULT, task.result())

    def cancel(self) -> None:
        self.cancelled = True
        if self.task is not None:
            self.task.cancel()


class SerialRunner:
    """Runs ``fn(message)`` coroutines one at a time, in submission order, on
    ``loop``. ``report(exc, fn)`` gets each exception (it writes it to
    ``sys.unraisablehook``). ``close()`` drops what is still queued and the
    reference to ``fn``."""

    __slots__ = ("loop", "fn", "report", "queue", "running", "__weakref__")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fn: Callable[[Any], Awaitable[Any]],
        report: Callable[[BaseException, object], None],
    ) -> None:
        self.loop = loop
        self.fn: Callable[[Any], Awaitable[Any]] | None = fn
        self.report = report
        self.queue: collections.deque[Any] = collections.deque()
        self.running = False

    def submit(self, message: Any) -> None:
        """From any thread."""
        self.loop.call_soon_threadsafe(self._push, message)

    def close(self) -> None:
        """From any thread; a closed loop has nothing left to run anyway."""
        try:
            self.loop.call_soon_threadsafe(self._close)
        except RuntimeError:
            self._close()

    def _close(self) -> None:
        self.fn = None
        self.queue.clear()

    def _push(self, message: Any) -> None:
        if self.fn is None:
            return
        self.queue.append(message)
        if not self.running:
            self.running = True
            self.loop.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self.queue:
                fn = self.fn
                if fn is None:
                    break
                message = self.queue.popleft()
                try:
                    await fn(message)
                except Exception as e:
                    self.report(e, fn)
                del fn, message
        finally:
            self.running = False


async def in_thread(fn: Callable[[], Any]) -> Any:
    """Runs the blocking ``fn()`` in the running loop's default executor."""
    return await asyncio.get_running_loop().run_in_executor(None, fn)
