"""The floors of ../shared/DESIGN.md, checked on every import statement of the packages.

Function-local imports count too: an upward import hidden in a function is the
cycle the layering exists to prevent, only deferred to run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: package -> the packages it may import (itself always)
ALLOWED = {
    "ledger": set(),
    "verify": {"ledger"},
    "capture": {"ledger"},
    "evidence": {"ledger", "capture", "verify"},
}


def modules(package: str, root: Path = ROOT) -> list[Path]:
    return sorted(p for p in (root / package).rglob("*.py") if "migrations/versions" not in p.as_posix())


def package_of(path: Path, root: Path = ROOT) -> tuple[str, ...]:
    """The package a module file is in (a package's ``__init__`` is in itself)."""
    return path.relative_to(root).with_suffix("").parts[:-1]


def source(node: ast.ImportFrom, package: tuple[str, ...]) -> str:
    """The absolute module a ``from ... import`` reads, relative levels resolved."""
    if not node.level:
        return node.module or ""
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ((node.module,) if node.module else ()))


def imported(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in ``path``, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = package_of(path, root)
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.lineno, source(node, package)))
    return out


def upward(package: str, root: Path = ROOT) -> list[str]:
    bad = []
    for path in modules(package, root):
        for line, name in imported(path, root):
            top = name.split(".")[0]
            if top in ALLOWED and top != package and top not in ALLOWED[package]:
                bad.append(f"{path.relative_to(root)}:{line} imports {name}")
    return bad


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_package_imports_a_floor_above_it(package):
    assert upward(package) == []


def test_control_the_check_sees_an_upward_import_inside_a_function(tmp_path):
    # The same walk over a module that hides an upward import in a function body.
    (tmp_path / "ledger").mkdir()
    (tmp_path / "ledger" / "x.py").write_text("def f():\n    from evidence.case import export_case\n")
    (tmp_path / "ledger" / "y.py").write_text("from .x import f\n")
    (tmp_path / "ledger" / "z.py").write_text("from ..evidence import case\n")  # relative, resolved
    assert upward("ledger", tmp_path) == ["ledger/x.py:2 imports evidence.case", "ledger/z.py:1 imports evidence"]


def module_graph() -> dict[str, set[str]]:
    """Module -> modules of the four packages it imports at module level (what runs on import)."""
    names = {}
    for package in ALLOWED:
        for path in modules(package):
            parts = path.relative_to(ROOT).with_suffix("").parts
            names[path] = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    known = set(names.values())
    graph: dict[str, set[str]] = {}
    for path, mod in names.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        deps: set[str] = set()
        package = package_of(path)
        for node in tree.body:  # module level only; TYPE_CHECKING blocks do not run
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                b = source(node, package)
                targets = [b] + [f"{b}.{a.name}" for a in node.names]
            for t in targets:
                # A submodule's own parent packages run first in any case; a cycle
                # through them is Python's ordinary package structure.
                if t in known and t != mod and not mod.startswith(t + "."):
                    deps.add(t)
        graph[mod] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                found.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return found


def test_no_import_cycles_between_modules():
    assert cycles(module_graph()) == []


def test_control_the_cycle_check_finds_a_cycle():
    assert cycles({"capture.a": {"capture.b"}, "capture.b": {"capture.a"}}) == [["capture.a", "capture.b", "capture.a"]]
