# Type stubs of the native module `pso._pso`, written by hand.
# tests/test_stubs.py checks that they name exactly what the module has, and
# tests/typed_usage.py is checked with `mypy --strict` by scripts/test-python.sh.

import builtins
import datetime
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Literal, TypedDict, final

from typing_extensions import NotRequired, Self, TypeAlias

__version__: str
__all__ = [
    "ActivationReport",
    "AlreadyExistsError",
    "BusyError",
    "ClosedError",
    "ConflictError",
    "CycleError",
    "HandlerError",
    "InternalError",
    "InvalidArgumentError",
    "InvalidUtf8Error",
    "IoError",
    "NotActiveError",
    "NotFoundError",
    "NullPointerError",
    "Orchestrator",
    "ParseError",
    "Plan",
    "PsoError",
    "StaleHandleError",
    "SystemOutcome",
    "SystemStatus",
    "TimeoutError",
    "Transition",
    "__version__",
]

_Handler: TypeAlias = Callable[[str], object]
"""A lifecycle handler: called with the system name; its return value is ignored."""

_Priority: TypeAlias = Literal["critical", "high", "normal", "low", "background"]
_EdgeKind: TypeAlias = Literal["requires", "wants", "after", "conflicts", "interacts"]
_State: TypeAlias = Literal[
    "Registered", "Activating", "Active", "Deactivating", "Inactive", "Failed"
]
_Outcome: TypeAlias = Literal[
    "activated", "deactivated", "already_active", "not_active", "failed", "timed_out", "blocked"
]

class _SystemDict(TypedDict):
    """One entry of `Orchestrator.register_many`: `register`'s keywords plus `name`."""

    name: str
    tier: NotRequired[str | None]
    tags: NotRequired[Iterable[str]]
    priority: NotRequired[_Priority]
    resources: NotRequired[Mapping[str, int] | None]
    requires: NotRequired[Iterable[str]]
    wants: NotRequired[Iterable[str]]
    after: NotRequired[Iterable[str]]
    conflicts: NotRequired[Iterable[str]]
    interacts: NotRequired[Iterable[str]]
    timeout: NotRequired[float | None]
    on_activate: NotRequired[_Handler | None]
    on_deactivate: NotRequired[_Handler | None]

@final
class Orchestrator:
    """Registers systems and their relations, activates them in dependency
    order on a pool of worker threads, and tells what state each is in and why."""

    def __new__(
        cls, *, workers: int | None = None, transition_timeout: float | None = 30.0
    ) -> Self: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> bool: ...
    @property
    def workers(self) -> int: ...
    def __len__(self) -> int: ...
    def register(
        self,
        name: str,
        *,
        tier: str | None = None,
        tags: Iterable[str] = (),
        priority: _Priority = "normal",
        resources: Mapping[str, int] | None = None,
        requires: Iterable[str] = (),
        wants: Iterable[str] = (),
        after: Iterable[str] = (),
        conflicts: Iterable[str] = (),
        interacts: Iterable[str] = (),
        timeout: float | None = None,
        on_activate: _Handler | None = None,
        on_deactivate: _Handler | None = None,
    ) -> None: ...
    def register_many(
        self,
        systems: Iterable[_SystemDict],
        edges: Iterable[tuple[str, _EdgeKind, str]] = (),
    ) -> int: ...
    def connect(self, source: str, kind: _EdgeKind, target: str) -> None: ...
    def set_handlers(
        self,
        name: str,
        *,
        on_activate: _Handler | None = None,
        on_deactivate: _Handler | None = None,
    ) -> None: ...
    def load_topology(self, path: str | os.PathLike[str]) -> int: ...
    def load_topology_str(self, text: str, format: Literal["toml", "json"] = "toml") -> int: ...
    def activate_system(self, name: str) -> ActivationReport: ...
    def activate_all(self) -> ActivationReport: ...
    def deactivate_system(self, name: str) -> ActivationReport: ...
    def deactivate_all(self) -> ActivationReport: ...
    def system_status(self) -> list[SystemStatus]: ...
    def status(self, name: str) -> SystemStatus: ...
    def why_inactive(self, name: str) -> str: ...
    def plan(self, name: str) -> Plan: ...
    def export(self, format: Literal["json", "toml", "dot", "mermaid"] = "json") -> str: ...

@final
class ActivationReport:
    """The result of a lifecycle call: one outcome per system touched."""

    @property
    def target(self) -> str: ...
    @property
    def action(self) -> Literal["activate", "deactivate"]: ...
    @property
    def outcomes(self) -> list[SystemOutcome]: ...
    @property
    def elapsed(self) -> float: ...
    def outcome(self, system: str) -> SystemOutcome | None: ...
    @property
    def activated(self) -> list[str]: ...
    @property
    def deactivated(self) -> list[str]: ...
    @property
    def failures(self) -> list[SystemOutcome]: ...
    def to_json(self) -> str: ...

@final
class SystemOutcome:
    """What happened to one system in a lifecycle call."""

    @property
    def system(self) -> str: ...
    @property
    def outcome(self) -> _Outcome: ...
    @property
    def error(self) -> str | None: ...
    @property
    def level(self) -> int: ...
    @property
    def queued(self) -> float: ...
    @property
    def ran(self) -> float: ...

@final
class Plan:
    """What `activate_system` would do, computed without running anything."""

    @property
    def target(self) -> str: ...
    @property
    def levels(self) -> list[list[str]]: ...
    @property
    def already_active(self) -> list[str]: ...
    def to_json(self) -> str: ...

@final
class Transition:
    """One recorded state change of a system."""

    @property
    def from_(self) -> _State: ...
    @property
    def to(self) -> _State: ...
    @property
    def reason(self) -> str: ...
    @property
    def at(self) -> datetime.datetime: ...

@final
class SystemStatus:
    """A snapshot of one system: its state, why, and its relations."""

    @property
    def name(self) -> str: ...
    @property
    def state(self) -> _State: ...
    @property
    def since(self) -> datetime.datetime: ...
    @property
    def reason(self) -> str: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def tier(self) -> str | None: ...
    @property
    def tags(self) -> list[str]: ...
    @property
    def priority(self) -> _Priority: ...
    @property
    def resources(self) -> dict[str, int]: ...
    @property
    def requires(self) -> list[str]: ...
    @property
    def wants(self) -> list[str]: ...
    @property
    def after(self) -> list[str]: ...
    @property
    def conflicts(self) -> list[str]: ...
    @property
    def interacts(self) -> list[str]: ...
    @property
    def required_by(self) -> list[str]: ...
    @property
    def has_activate_handler(self) -> bool: ...
    @property
    def has_deactivate_handler(self) -> bool: ...
    @property
    def history(self) -> list[Transition]: ...

class PsoError(Exception):
    """Base class of every PSO error."""

    kind: str
    code: int

class NullPointerError(PsoError, ValueError): ...
class InvalidUtf8Error(PsoError, ValueError): ...
class StaleHandleError(PsoError): ...
class InternalError(PsoError): ...
class NotFoundError(PsoError, LookupError): ...
class AlreadyExistsError(PsoError): ...

class CycleError(PsoError):
    path: list[str]

class InvalidArgumentError(PsoError, ValueError): ...

class ParseError(PsoError, ValueError):
    line: int
    column: int
    source: str

class ConflictError(PsoError):
    system: str
    other: str

class HandlerError(PsoError):
    report: ActivationReport
    chain: list[str]
    target: str

class TimeoutError(PsoError, builtins.TimeoutError): ...
class BusyError(PsoError): ...
class ClosedError(PsoError): ...
class IoError(PsoError, OSError): ...
class NotActiveError(PsoError): ...
