"""The house plan, checked statically: no import cycles, and each package imports only what
its room may (docs/ARCHITECTURE.md, "Shape of the house").

Every .py file of the project's packages is parsed with `ast`; an import counts wherever it
is written, at the top of a module or inside a function, because an import inside a
function is still a dependency (and hiding one there is how cycles used to be kept alive).
Only imports under `if TYPE_CHECKING:` are left out of the cycle check: they never run.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("backend", "store", "worker", "jobspec", "cli", "client")

# Cycles that exist today outside the area that removed the rest: each entry is one
# strongly connected set of modules. Fix one, then delete its entry (a stale entry fails
# too). Any other cycle, or a module joining one of these, fails the test.
KNOWN_CYCLES: tuple[frozenset[str], ...] = ()  # none left: keep it so

# (package, banned names): what a room never imports, at any depth of a function, nor names
# in a process command line it builds (tests/test_command_lines.py). A banned name bans its
# submodules too, except the room's own (worker.ml may import worker.ml, not worker).
WEB = ("fastapi", "starlette", "jinja2", "plotly")
KERAS = ("keras", "tensorflow")
QUEUE_AND_SQL = ("celery", "kombu", "sqlalchemy", "alembic")
# Test scaffolding (tests/stack.py: throw-away databases, test timings) is not installed.
NOT_INSTALLED = ("tests", "bench", "docs")
BOUNDARIES = {
    "jobspec": ("store", "backend", "worker", "cli", *QUEUE_AND_SQL, *WEB, *KERAS, *NOT_INSTALLED),
    "store": ("backend", "worker", "cli", *WEB, *KERAS, *NOT_INSTALLED),
    "backend": ("worker", "cli", *KERAS, *NOT_INSTALLED),
    "worker": ("backend", "cli", *WEB, *NOT_INSTALLED),
    "worker.ml": ("store", "backend", "worker", "cli", *QUEUE_AND_SQL, *WEB, *NOT_INSTALLED),
    # the composition root: it starts the web and the workers, and may import any room
    "cli": NOT_INSTALLED,
    # the Python client speaks HTTP; Keras only inside Run.load_model (worker.ml's layers)
    "client": ("store", "backend", "cli", *QUEUE_AND_SQL, *WEB, *NOT_INSTALLED),
}
JOBSPEC_ALLOWED = ("jobspec", "pydantic", "pydantic_core", "typing_extensions", "annotated_types")


@dataclass(frozen=True)
class Import:
    """One import statement's target, as a dotted module name."""

    source: str  # the importing module
    target: str
    line: int
    in_function: bool
    type_checking: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_files() -> dict[str, Path]:
    files = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            files[module_name(path)] = path
    return files


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Collector(ast.NodeVisitor):
    """Every import of one module, noting whether it sits in a function or a TYPE_CHECKING
    block; `from X import Y` resolves to X.Y when that is a module of the project."""

    def __init__(self, module: str, is_package: bool, modules: set[str]):
        self.module, self.modules = module, modules
        self.package = module if is_package else module.rpartition(".")[0]
        self.found: list[Import] = []
        self._depth = 0
        self._type_checking = 0

    def _add(self, target: str, node: ast.stmt) -> None:
        self.found.append(
            Import(self.module, target, node.lineno, self._depth > 0, self._type_checking > 0)
        )

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")[: len(self.package.split(".")) - node.level + 1]
            base_name = ".".join([*base, *([node.module] if node.module else [])])
        else:
            base_name = node.module or ""
        if base_name == "__future__":
            return
        for alias in node.names:
            full = f"{base_name}.{alias.name}"
            self._add(full if full in self.modules else base_name, node)

    def _function(self, node: ast.AST) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self._type_checking += 1
        for child in node.body:
            self.visit(child)
        self._type_checking -= 1
        for child in node.orelse:
            self.visit(child)


def all_imports() -> list[Import]:
    files = project_files()
    modules = set(files)
    found = []
    for module, path in files.items():
        collector = _Collector(module, path.name == "__init__.py", modules)
        collector.visit(ast.parse(path.read_text(), filename=str(path)))
        found += collector.found
    return found


def _owning_module(target: str, modules: set[str]) -> str | None:
    """The project module an import target names (a name inside it counts as the module)."""
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target or None


def import_graph() -> dict[str, dict[str, Import]]:
    """module -> {imported project module -> one import that makes the edge}."""
    modules = set(project_files())
    graph: dict[str, dict[str, Import]] = {m: {} for m in modules}
    for imp in all_imports():
        target = _owning_module(imp.target, modules)
        if imp.type_checking or target is None or target == imp.source:
            continue
        graph[imp.source].setdefault(target, imp)
    return graph


def strongly_connected(graph: dict[str, dict[str, Import]]) -> list[frozenset[str]]:
    """Tarjan's algorithm, iterative; returns only the sets that hold a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[frozenset[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                members = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    members.add(member)
                    if member == node:
                        break
                if len(members) > 1:
                    found.append(frozenset(members))
    return found


def describe_cycle(graph: dict[str, dict[str, Import]], members: frozenset[str]) -> str:
    """One closed path through the set, each step with the line that makes it."""
    start = min(members)
    path, seen = [start], {start}
    while True:  # walk inside the set until a module repeats
        node = path[-1]
        nxt = min(t for t in graph[node] if t in members)
        if nxt in seen:
            path = path[path.index(nxt) :] + [nxt]
            break
        path.append(nxt)
        seen.add(nxt)
    steps = []
    for a, b in zip(path, path[1:], strict=False):
        imp = graph[a][b]
        where = "in a function" if imp.in_function else "top level"
        steps.append(f"  {a} -> {b}  (line {imp.line}, {where})")
    return f"cycle among {sorted(members)}:\n" + "\n".join(steps)


def test_no_import_cycles():
    graph = import_graph()
    cycles = strongly_connected(graph)
    new = [c for c in cycles if c not in KNOWN_CYCLES]
    gone = [c for c in KNOWN_CYCLES if c not in cycles]
    message = "\n".join(describe_cycle(graph, c) for c in new)
    assert not new, f"new import cycle(s):\n{message}"
    assert not gone, f"fixed, delete from KNOWN_CYCLES: {[sorted(c) for c in gone]}"


def test_the_walker_sees_function_level_imports_and_cycles():
    tree = ast.parse(
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "from . import b\n"
        "if TYPE_CHECKING:\n    from pkg import c\n"
        "def f():\n    from pkg.d import thing\n"
    )
    collector = _Collector("pkg.a", False, {"pkg.a", "pkg.b", "pkg.c", "pkg.d"})
    collector.visit(tree)
    got = {(i.target, i.in_function, i.type_checking) for i in collector.found}
    assert ("pkg.b", False, False) in got
    assert ("pkg.c", False, True) in got
    assert ("pkg.d", True, False) in got
    graph = {"a": {"b": None}, "b": {"c": None}, "c": {"a": None}, "d": {"a": None}}
    assert strongly_connected(graph) == [frozenset({"a", "b", "c"})]


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(f"{package}.")


def may_use(source: str, target: str) -> bool:
    """Whether module `source` may import (or start a process of) module `target`."""
    for package, banned in BOUNDARIES.items():
        outside = _within(source, package) and not _within(target, package)
        if outside and any(_within(target, name) for name in banned):
            return False
    return True


def test_every_installed_package_has_a_row():
    """A package added to pyproject.toml without a boundary row would be checked by nothing."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    installed = {pattern.rstrip("*") for pattern in include}
    assert installed == set(PACKAGES)
    assert set(PACKAGES) <= set(BOUNDARIES)


@pytest.mark.parametrize("package", sorted(BOUNDARIES))
def test_each_room_imports_only_what_it_may(package):
    bad = [
        f"{imp.source}:{imp.line} imports {imp.target}"
        for imp in all_imports()
        if _within(imp.source, package) and not may_use(imp.source, imp.target)
    ]
    assert not bad, "\n".join(bad)


# Fault-injection hooks issue 20 asked for, inert unless a test sets their variable (the
# only STACKLAB_TEST_ names an installed module may read), by the module that reads each.
FAULT_HOOKS = {
    "store.timeutil": ("STACKLAB_TEST_CLOCK_OFFSET_SECONDS",),  # two machines' clocks apart
}


def test_no_installed_module_carries_test_scaffolding():
    """Test databases, test timings and their variables live in tests/stack.py only."""
    marks = ("STACKLAB_TEST_", "stacklab_test_")
    bad = [
        f"{module} mentions {mark}"
        for module, path in project_files().items()
        for mark in marks
        if mark in _without(path.read_text(), FAULT_HOOKS.get(module, ()))
    ]
    assert not bad, "\n".join(bad)


def _without(text: str, names: tuple[str, ...]) -> str:
    for name in names:
        text = text.replace(name, "")
    return text


def test_a_banned_import_is_caught():
    assert not may_use("worker.cli_like", "backend.main")
    assert not may_use("worker.ml.tune", "worker.recorder")
    assert may_use("worker.ml.tune", "worker.ml.models")
    assert not may_use("backend.runs.pages", "cli.processes")
    assert not may_use("store.db", "tests.stack")
    assert may_use("cli.serve", "backend.main")


def test_jobspec_imports_only_pydantic_and_the_standard_library():
    bad = [
        f"{imp.source}:{imp.line} imports {imp.target}"
        for imp in all_imports()
        if imp.source.split(".")[0] == "jobspec"
        and (top := imp.target.split(".")[0]) not in JOBSPEC_ALLOWED
        and top not in sys.stdlib_module_names
    ]
    assert not bad, "\n".join(bad)
