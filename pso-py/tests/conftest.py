"""Shared fixtures. Every test runs under a watchdog: a deadlock dumps every
thread's stack and ends the run instead of hanging CI."""

from __future__ import annotations

import faulthandler
import sys
from collections.abc import Iterator

import pytest

import pso

# Generous: the whole suite takes a few seconds; only a hang gets near this.
WATCHDOG_SECONDS = 60


@pytest.fixture(autouse=True)
def _watchdog() -> Iterator[None]:
    faulthandler.dump_traceback_later(WATCHDOG_SECONDS, exit=True, file=sys.stderr)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def orch() -> Iterator[pso.Orchestrator]:
    """A small orchestrator, closed after the test."""
    with pso.Orchestrator(workers=2) as o:
        yield o
