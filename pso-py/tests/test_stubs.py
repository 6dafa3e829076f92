"""The hand-written stubs (_pso.pyi) name exactly what the module has."""

from __future__ import annotations

import ast
import inspect
import pathlib

import pso
from pso import _pso

STUB = pathlib.Path(_pso.__file__).with_name("_pso.pyi")


def public(names: set[str]) -> set[str]:
    return {n for n in names if not n.startswith("_") or n == "__version__"}


def stub_tree() -> ast.Module:
    assert STUB.exists(), f"the installed package has no stub at {STUB}"
    return ast.parse(STUB.read_text())


def stub_module_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return public(names) - {"__all__"}


def test_module_names_match_both_ways() -> None:
    tree = stub_tree()
    runtime = public(set(dir(_pso))) - {"__all__"}
    assert stub_module_names(tree) == runtime
    assert set(_pso.__all__) == runtime
    assert set(pso.__all__) == runtime  # the package re-exports everything


def test_class_members_match_both_ways() -> None:
    for node in stub_tree().body:
        if not isinstance(node, ast.ClassDef) or node.name.startswith("_"):
            continue
        cls = getattr(_pso, node.name)
        stub_members = public(
            {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
            | {n.target.id for n in node.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
        )
        if issubclass(cls, BaseException):
            # Exceptions: `kind`/`code` are class attributes; the others are
            # set on each instance (checked where the errors are raised).
            assert public(set(vars(cls))) <= stub_members | {"kind", "code"}, node.name
            continue
        runtime_members = public({n for n, _ in inspect.getmembers(cls)}) - public(set(dir(object)))
        assert stub_members - {"__new__", "__enter__", "__exit__", "__len__"} == runtime_members, node.name
