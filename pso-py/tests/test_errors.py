"""The error contract of docs/API.md: one class per kind, with `.kind` and
`.code`, the builtin bases, and a clear typed error for bad input that changes
nothing."""

from __future__ import annotations

import builtins
from collections.abc import Callable

import pytest

import pso

# docs/API.md, "Errors": kind name, code, Python class, extra builtin base.
CONTRACT = [
    ("NULL_POINTER", 1, "NullPointerError", ValueError),
    ("INVALID_UTF8", 2, "InvalidUtf8Error", ValueError),
    ("STALE_HANDLE", 3, "StaleHandleError", None),
    ("INTERNAL", 4, "InternalError", None),
    ("NOT_FOUND", 10, "NotFoundError", LookupError),
    ("ALREADY_EXISTS", 11, "AlreadyExistsError", None),
    ("CYCLE", 12, "CycleError", None),
    ("INVALID_ARGUMENT", 13, "InvalidArgumentError", ValueError),
    ("PARSE", 14, "ParseError", ValueError),
    ("CONFLICT", 15, "ConflictError", None),
    ("HANDLER_FAILED", 16, "HandlerError", None),
    ("TIMEOUT", 17, "TimeoutError", builtins.TimeoutError),
    ("BUSY", 18, "BusyError", None),
    ("CLOSED", 19, "ClosedError", None),
    ("IO", 20, "IoError", OSError),
    ("NOT_ACTIVE", 21, "NotActiveError", None),
    ("NO_RESPONDERS", 22, "NoRespondersError", None),
    ("OVERFLOW", 23, "QueueOverflowError", None),
    ("CAS_CONFLICT", 24, "CasConflictError", None),
    ("COMPACTED", 25, "CompactedError", None),
    ("EXCEEDS_CAPACITY", 30, "ExceedsCapacityError", None),
    ("EXCEEDS_QUOTA", 31, "ExceedsQuotaError", None),
    ("CANCELLED", 32, "CancelledError", None),
]


def runtime_error_classes() -> dict[str, type[pso.PsoError]]:
    return {
        name: value
        for name, value in vars(pso).items()
        if isinstance(value, type) and issubclass(value, pso.PsoError) and value is not pso.PsoError
    }


def test_every_kind_maps_to_one_distinct_class() -> None:
    classes = runtime_error_classes()
    # A kind added to pso-core gets a class automatically; this fails until
    # the contract (docs/API.md and this table) names it.
    assert sorted(classes) == sorted(name for _, _, name, _ in CONTRACT)
    assert len({c.kind for c in classes.values()}) == len(CONTRACT)
    assert len({c.code for c in classes.values()}) == len(CONTRACT)
    for kind, code, name, base in CONTRACT:
        cls = classes[name]
        assert cls.kind == kind and cls.code == code, name
        assert cls.__module__ == "pso" and cls.__name__ == name
        assert issubclass(cls, pso.PsoError) and issubclass(cls, Exception)
        if base is not None:
            assert issubclass(cls, base), name
        for _, _, other, _ in CONTRACT:
            if other != name:
                assert not issubclass(cls, classes[other]), (name, other)
    assert issubclass(pso.NotFoundError, LookupError)
    assert issubclass(pso.TimeoutError, builtins.TimeoutError)
    assert pso.TimeoutError is not builtins.TimeoutError
    assert not issubclass(pso.HandlerError, ValueError)
    # Names that would shadow or be confused with builtins/asyncio's are not.
    import asyncio

    assert not issubclass(pso.CancelledError, asyncio.CancelledError)
    assert not issubclass(pso.QueueOverflowError, builtins.OverflowError)
    assert not hasattr(pso, "OverflowError")


def test_raised_errors_carry_kind_code_and_core_message(orch: pso.Orchestrator) -> None:
    with pytest.raises(pso.NotFoundError) as info:
        orch.status("ghost")
    err = info.value
    assert isinstance(err, LookupError)
    assert (err.kind, err.code) == ("NOT_FOUND", 10)
    assert str(err) == "unknown system 'ghost'"


def test_unknown_names_everywhere(orch: pso.Orchestrator) -> None:
    orch.register("a")
    for call in (
        lambda: orch.status("x"),
        lambda: orch.why_inactive("x"),
        lambda: orch.plan("x"),
        lambda: orch.activate_system("x"),
        lambda: orch.deactivate_system("x"),
        lambda: orch.connect("a", "requires", "x"),
        lambda: orch.set_handlers("x", on_activate=print),
        lambda: orch.register("b", requires=["x"]),
    ):
        with pytest.raises(pso.NotFoundError, match="'x'"):
            call()
    assert len(orch) == 1 and orch.status("a").requires == []


def test_bad_strings_name_the_bad_value(orch: pso.Orchestrator) -> None:
    orch.register("a")
    orch.register("b")
    with pytest.raises(pso.InvalidArgumentError, match="'needs'") as info:
        orch.connect("a", "needs", "b")  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError) and info.value.code == 13
    with pytest.raises(pso.InvalidArgumentError, match="'urgent'"):
        orch.register("c", priority="urgent")  # type: ignore[arg-type]
    with pytest.raises(pso.InvalidArgumentError, match="'yaml'"):
        orch.load_topology_str("", format="yaml")  # type: ignore[arg-type]
    with pytest.raises(pso.InvalidArgumentError, match="'svg'"):
        orch.export("svg")  # type: ignore[arg-type]
    with pytest.raises(pso.InvalidArgumentError, match="contains"):
        orch.register("has space")
    with pytest.raises(pso.InvalidArgumentError, match="empty"):
        orch.register("")
    with pytest.raises(pso.InvalidArgumentError, match="-5"):
        orch.register("c", resources={"cpu": -5})
    with pytest.raises(pso.InvalidArgumentError, match="timeout"):
        orch.register("c", timeout=-1.0)
    with pytest.raises(pso.InvalidArgumentError, match="timeout"):
        orch.register("c", timeout=float("nan"))
    assert [s.name for s in orch.system_status()] == ["a", "b"]
    assert orch.status("a").requires == []


def test_wrong_python_types_raise_type_error(orch: pso.Orchestrator) -> None:
    bad_calls: list[Callable[[], object]] = [
        lambda: orch.register(5),  # type: ignore[arg-type]
        lambda: orch.register("c", requires="a"),  # a str is not a list of names
        lambda: orch.register("c", requires=[1]),  # type: ignore[list-item]
        lambda: orch.register("c", tags=5),  # type: ignore[arg-type]
        lambda: orch.register("c", resources=[("cpu", 1)]),  # type: ignore[arg-type]
        lambda: orch.register("c", resources={"cpu": 1.5}),  # type: ignore[dict-item]
        lambda: orch.register("c", on_activate=5),  # type: ignore[arg-type]
        lambda: orch.register("c", timeout="1s"),  # type: ignore[arg-type]
        lambda: orch.set_handlers("c", on_deactivate="nope"),  # type: ignore[arg-type]
        lambda: orch.register_many("c"),  # type: ignore[arg-type]
        lambda: orch.register_many([["c"]]),  # type: ignore[list-item]
        lambda: orch.register_many([{"name": "c"}], edges=[("c", "requires")]),  # type: ignore[list-item]
        lambda: orch.load_topology(5),  # type: ignore[arg-type]
    ]
    for call in bad_calls:
        with pytest.raises(TypeError):
            call()
    with pytest.raises(TypeError, match=r"requires=\['a'\]"):
        orch.register("c", requires="a")
    assert len(orch) == 0


def test_constructor_arguments() -> None:
    with pso.Orchestrator(workers=3, transition_timeout=2.5) as o:
        assert o.workers == 3
    with pytest.raises(pso.InvalidArgumentError, match="at least 1"):
        pso.Orchestrator(workers=0)
    with pytest.raises(pso.InvalidArgumentError, match="-2"):
        pso.Orchestrator(workers=-2)
    with pytest.raises(pso.InvalidArgumentError, match="transition_timeout"):
        pso.Orchestrator(transition_timeout=0)
    with pytest.raises(TypeError):
        pso.Orchestrator(workers="2")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        pso.Orchestrator(2)  # type: ignore[call-arg]


def test_duplicates_and_cycles_change_nothing(orch: pso.Orchestrator) -> None:
    orch.register("a")
    orch.register("b", requires=["a"])
    orch.register("c", after=["b"])
    with pytest.raises(pso.AlreadyExistsError, match="'a'"):
        orch.register("a", tier="other")
    assert orch.status("a").tier is None
    with pytest.raises(pso.CycleError) as info:
        orch.connect("a", "wants", "c")
    assert info.value.path == ["a", "c", "b", "a"]
    assert info.value.kind == "CYCLE"
    assert orch.status("a").wants == []
    with pytest.raises(pso.CycleError) as info:
        orch.register_many([{"name": "x", "requires": ["y"]}, {"name": "y", "requires": ["x"]}])
    assert info.value.path[0] == info.value.path[-1] and set(info.value.path) == {"x", "y"}
    assert len(orch) == 3
