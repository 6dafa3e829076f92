"""Registration verbs, topology files and exports."""

from __future__ import annotations

import json
import pathlib
from typing import Literal

import pytest

import pso

TOPOLOGY = """
[[systems]]
name = "PDT"
tier = "foundation"
priority = "critical"

[[systems]]
name = "PSec"
tier = "enterprise"
priority = "high"
tags = ["security"]
resources = { cpu = 500, memory = 256 }
requires = ["PDT"]
interacts = ["PBOS"]
timeout_ms = 5000

[[systems]]
name = "PBOS"
requires = ["PSec"]
wants = ["PTT"]

[[systems]]
name = "PTT"
after = ["PDT"]
"""


def test_register_many_is_all_or_nothing(orch: pso.Orchestrator) -> None:
    order: list[str] = []
    count = orch.register_many(
        [
            {"name": "db", "tier": "data", "on_activate": order.append},
            {"name": "api", "requires": ["db"], "priority": "high", "timeout": 2.0},
            {"name": "web", "on_activate": order.append},
        ],
        edges=[("web", "requires", "api"), ["web", "interacts", "db"]],  # type: ignore[list-item]
    )
    assert count == 3 and len(orch) == 3
    assert orch.status("web").requires == ["api"] and orch.status("web").interacts == ["db"]
    orch.activate_system("web")
    assert order == ["db", "web"]

    before = orch.export()
    bad_batches = [
        ([{"name": "x"}, {"name": "db"}], (), pso.AlreadyExistsError),
        ([{"name": "x"}, {"name": "y", "requires": ["nope"]}], (), pso.NotFoundError),
        ([{"name": "x"}], [("x", "requires", "ghost")], pso.NotFoundError),
        ([{"name": "x"}], [("x", "likes", "db")], pso.InvalidArgumentError),
        ([{"name": "x", "requries": ["db"]}], (), pso.InvalidArgumentError),
        ([{"tier": "t"}], (), pso.InvalidArgumentError),
        ([{"name": "x"}, {"name": "y", "priority": "asap"}], (), pso.InvalidArgumentError),
    ]
    for systems, edges, error in bad_batches:
        with pytest.raises(error):
            orch.register_many(systems, edges)  # type: ignore[arg-type]
        assert orch.export() == before and len(orch) == 3
    with pytest.raises(pso.InvalidArgumentError, match=r"systems\[0\]: unknown key 'requries'"):
        orch.register_many([{"name": "x", "requries": ["db"]}])  # type: ignore[typeddict-unknown-key]
    with pytest.raises(pso.InvalidArgumentError, match=r"systems\[1\]: unknown priority 'asap'"):
        orch.register_many([{"name": "x"}, {"name": "y", "priority": "asap"}])  # type: ignore[typeddict-item]
    assert orch.register_many([]) == 0


def test_connect_and_edges(orch: pso.Orchestrator) -> None:
    for name in ["a", "b", "c", "d", "e", "f"]:
        orch.register(name)
    orch.connect("a", "requires", "b")
    orch.connect("a", "requires", "b")  # an existing relation: no-op
    orch.connect("c", "wants", "a")
    orch.connect("d", "after", "c")
    orch.connect("e", "conflicts", "f")
    orch.connect("e", "interacts", "a")
    assert orch.status("a").requires == ["b"]
    assert orch.status("c").wants == ["a"]
    assert orch.status("d").after == ["c"]
    assert orch.status("f").conflicts == ["e"]
    assert orch.status("a").interacts == ["e"]
    with pytest.raises(pso.CycleError) as info:
        orch.connect("a", "requires", "a")
    assert info.value.path == ["a", "a"]


def test_load_topology_file_and_string(orch: pso.Orchestrator, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "engine.toml"
    path.write_text(TOPOLOGY)
    assert orch.load_topology(path) == 4
    psec = orch.status("PSec")
    assert (psec.tier, psec.priority, psec.tags) == ("enterprise", "high", ["security"])
    assert psec.resources == {"cpu": 500, "memory": 256} and psec.requires == ["PDT"]
    assert orch.status("PTT").after == ["PDT"]

    other = tmp_path / "more.json"
    other.write_text(json.dumps({"systems": [{"name": "X", "requires": ["PDT"]}]}))
    assert orch.load_topology(str(other)) == 1
    assert orch.load_topology_str('{"systems": [{"name": "Y"}]}', format="json") == 1
    assert orch.load_topology_str('[[systems]]\nname = "Z"\n') == 1
    assert len(orch) == 7


def test_topology_errors_change_nothing(orch: pso.Orchestrator, tmp_path: pathlib.Path) -> None:
    orch.register("base")
    with pytest.raises(pso.ParseError) as info:
        orch.load_topology_str('[[systems]]\nname = "a"\nrequries = ["base"]\n')
    err = info.value
    assert (err.line, err.column, err.source) == (3, 1, "<string>")
    assert isinstance(err, ValueError) and err.kind == "PARSE"
    assert "requries" in str(err) and "requires" in str(err)

    bad = tmp_path / "bad.json"
    bad.write_text('{"systems": [\n  {"name": "a",}\n]}')
    with pytest.raises(pso.ParseError) as info:
        orch.load_topology(bad)
    assert info.value.line == 2 and info.value.source == str(bad)

    with pytest.raises(pso.CycleError) as cycle:
        orch.load_topology_str(
            '[[systems]]\nname = "a"\nrequires = ["b"]\n[[systems]]\nname = "b"\nafter = ["a"]\n'
        )
    assert cycle.value.path in (["a", "b", "a"], ["b", "a", "b"])
    with pytest.raises(pso.NotFoundError):
        orch.load_topology_str('[[systems]]\nname = "a"\nrequires = ["ghost"]\n')
    with pytest.raises(pso.IoError) as io:
        orch.load_topology(tmp_path / "missing.toml")
    assert isinstance(io.value, OSError) and io.value.code == 20
    assert str(io.value).startswith("cannot read topology file ")
    with pytest.raises(pso.InvalidArgumentError):
        orch.load_topology(tmp_path / "topology.yaml")
    assert [s.name for s in orch.system_status()] == ["base"]


def test_export_round_trip(orch: pso.Orchestrator) -> None:
    orch.load_topology_str(TOPOLOGY)
    orch.register("extra", tags=["x"], resources={"gpu": 1}, timeout=1.5, conflicts=["PTT"])
    formats: list[Literal["json", "toml"]] = ["json", "toml"]
    for fmt in formats:
        text = orch.export(fmt)
        with pso.Orchestrator(workers=1) as copy:
            assert copy.load_topology_str(text, format=fmt) == 5
            assert copy.export(fmt) == text
            assert copy.export("json") == orch.export("json")
    exported = json.loads(orch.export())
    extra = next(s for s in exported["systems"] if s["name"] == "extra")
    assert extra["timeout_ms"] == 1500 and extra["resources"] == {"gpu": 1}
    dot = orch.export("dot")
    mermaid = orch.export("mermaid")
    for name in ["PDT", "PSec", "PBOS", "PTT", "extra"]:
        assert name in dot and name in mermaid
    assert dot.lstrip().startswith("digraph")


def test_repr_and_len(orch: pso.Orchestrator) -> None:
    assert len(orch) == 0
    orch.register("a")
    assert len(orch) == 1
    assert repr(orch) == "<pso.Orchestrator systems=1 workers=2>"
    report = orch.activate_system("a")
    assert repr(report).startswith("ActivationReport(target='a', action='activate', activated=['a'], failures=[], elapsed=")
    assert repr(report.outcomes[0]).startswith("SystemOutcome(system='a', outcome='activated', error=None, level=0,")
    assert repr(orch.plan("a")) == "Plan(target='a', levels=[], already_active=['a'])"
