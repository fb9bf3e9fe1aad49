"""The core's floors: no import cycle among ``lamp_harness`` modules, and each module imports only
modules on its own floor or below, as the floor map in ``docs/architecture.md`` declares.

Every import counts: at module level, inside functions (a lazy import closes a circle just as
well) and under ``if TYPE_CHECKING:`` (a type a module names is a dependency of its meaning).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from functools import cache
from itertools import pairwise
from pathlib import Path

import pytest

# The source tree of the checkout (not the installed copy, which has no docs/ beside it).
PACKAGE = Path(__file__).resolve().parents[2] / "lamp_harness"
ROOT = "lamp_harness"
FLOOR_MAP = PACKAGE.parent / "docs" / "architecture.md"


def modules_of(package: Path) -> dict[str, Path]:
    """Every module of ``package`` (a folder), by dotted name (a package by its ``__init__``)."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


@cache
def core_modules() -> dict[str, Path]:
    """Every module of the core."""
    return modules_of(PACKAGE)


def _base(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` reads from (``from . import x`` and ``from .a import
    b`` resolved against the importing module's package)."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    package = package[: len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def imports_of(module: str, modules: Mapping[str, Path]) -> dict[str, str]:
    """The ``modules`` that ``module`` imports, each with where it first imports it (``file:line``).
    ``from lamp_harness import x`` counts as importing the module ``lamp_harness.x`` when ``x`` is
    one, else as importing the package ``lamp_harness`` (whose ``__init__`` then runs)."""
    path = modules[module]
    found: dict[str, tuple[Path, int]] = {}
    # A stub next to a module (``__init__.pyi`` of a package that resolves its names lazily) holds
    # the imports its lazy lookups perform: they count as the module's own.
    stub = path.with_suffix(".pyi")
    files = [p for p in (path, stub) if p.is_file()]
    for file, node in ((f, n) for f in files for n in ast.walk(ast.parse(f.read_text(encoding="utf-8"), filename=str(f)))):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            base = _base(module, path, node)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.append(submodule if submodule in modules else base)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                # ``import lamp_harness.a.b`` runs ``lamp_harness.a.b``: the deepest core module named.
                name = alias.name
                while name and name not in modules:
                    name = name.rpartition(".")[0]
                targets.append(name)
        for target in targets:
            if target in modules and target != module:
                found[target] = min(found.get(target, (file, node.lineno)), (file, node.lineno))
    root = Path(*path.parts[: len(path.parts) - len(module.split(".")) - (path.name == "__init__.py")])
    return {target: f"{file.relative_to(root)}:{line}" for target, (file, line) in found.items()}


@cache
def import_graph() -> dict[str, dict[str, str]]:
    return {module: imports_of(module, core_modules()) for module in core_modules()}


def find_cycles(graph: Mapping[str, Iterable[str]]) -> list[tuple[list[str], list[str]]]:
    """Per knot of modules that import each other around circles (a strongly connected component
    of more than one module, found with Tarjan's algorithm): one shortest circle through it, as a
    closed path ``a -> b -> ... -> a``, and all the modules of the knot."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    cycles = []
    for component in components:
        start = min(component)
        parents: dict[str, str] = {}  # breadth-first from ``start`` back to itself, inside the component
        frontier = [start]
        while start not in parents:
            following = []
            for node in frontier:
                for nxt in sorted(graph[node]):
                    if nxt in component and nxt not in parents:
                        parents[nxt] = node
                        following.append(nxt)
            frontier = following
        chain = []
        node = parents[start]
        while node != start:
            chain.append(node)
            node = parents[node]
        cycles.append(([start, *reversed(chain), start], sorted(component)))
    return cycles


def _describe(cycle: list[str], knot: list[str], graph: dict[str, dict[str, str]]) -> str:
    lines = [f"knot of {len(knot)} modules: {', '.join(knot)}; one circle through it:"]
    for a, b in pairwise(cycle):
        lines.append(f"  {a} -> {b} ({graph[a][b]})")
    return "\n    ".join(lines)


@cache
def floor_map() -> tuple[dict[str, int], set[str], set[str]]:
    """The floors declared in ``docs/architecture.md``: its table rows ``| 3 | `name` | ...``,
    where ``name`` is a module by its path below the package (``run/runner``), a folder
    (``cli/``: the package and everything in it without a row of its own) or the package itself
    (``lamp_harness``). Rows marked ``(planned)`` may name a module that does not exist yet.
    Returns the floors, the planned names and the folders."""
    floors: dict[str, int] = {}
    planned: set[str] = set()
    folders: set[str] = set()
    for line in FLOOR_MAP.read_text(encoding="utf-8").splitlines():
        row = re.match(r"\|\s*(\d+)\s*\|\s*`([\w./]+)`\s*\|(.*)", line)
        if not row:
            continue
        name = row.group(2).rstrip("/").replace("/", ".")
        name = ROOT if name == ROOT else f"{ROOT}.{name}"
        assert name not in floors, f"{FLOOR_MAP.name}: {name} has two rows in the floor map"
        floors[name] = int(row.group(1))
        if "(planned)" in row.group(3):
            planned.add(name)
        if row.group(2).endswith("/"):
            folders.add(name)
    return floors, planned, folders


def floor_of(module: str) -> int | None:
    """A module's floor: its own row, else the row of the nearest folder (a row ending in ``/``)
    that holds it. A package's own row (``run``) covers its ``__init__`` only."""
    floors, _, folders = floor_map()
    if module in floors:
        return floors[module]
    name = module.rpartition(".")[0]
    while name and name != ROOT:  # a module the map misses does not inherit the facade's floor
        if name in folders:
            return floors[name]
        name = name.rpartition(".")[0]
    return None


def test_the_import_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    """Module-level, function-level, TYPE_CHECKING, relative, ``from package import module``,
    ``from package import name`` (the package's ``__init__``) and stub imports are all edges, each
    with its file and line; a circle among them is found with its path."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "__version__ = '1'\n",
        "__init__.pyi": "from pkg.low import Thing as Thing\n",
        "low.py": "import os\n",
        "lazy.py": "def f():\n    from pkg import low\n",
        "typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.lazy import f\n",
        "version.py": "from pkg import __version__\n",
        "sub/__init__.py": "from . import leaf\n",
        "sub/leaf.py": "from ..low import x\nimport pkg.typed\n",
    }
    for name, text in files.items():
        (package / name).write_text(text, encoding="utf-8")
    modules = modules_of(package)
    graph = {module: imports_of(module, modules) for module in modules}
    assert graph == {
        "pkg": {"pkg.low": "pkg/__init__.pyi:1"},
        "pkg.low": {},
        "pkg.lazy": {"pkg.low": "pkg/lazy.py:2"},
        "pkg.typed": {"pkg.lazy": "pkg/typed.py:3"},
        "pkg.version": {"pkg": "pkg/version.py:1"},
        "pkg.sub": {"pkg.sub.leaf": "pkg/sub/__init__.py:1"},
        "pkg.sub.leaf": {"pkg.low": "pkg/sub/leaf.py:1", "pkg.typed": "pkg/sub/leaf.py:2"},
    }
    assert find_cycles(graph) == []
    found = find_cycles({"a": {"b"}, "b": {"c", "d"}, "c": {"a"}, "d": set()})
    assert found == [(["a", "b", "c", "a"], ["a", "b", "c"])]


def test_the_core_has_no_import_cycle() -> None:
    graph = import_graph()
    cycles = find_cycles(graph)
    assert not cycles, "import cycles in the core (break each by moving the shared piece to a lower floor):\n  " + (
        "\n  ".join(_describe(cycle, knot, graph) for cycle, knot in cycles)
    )


def test_every_module_has_a_floor_in_the_map_and_the_map_names_real_modules() -> None:
    floors, planned, _ = floor_map()
    assert floors, f"{FLOOR_MAP} has no floor map table"
    missing = sorted(m for m in core_modules() if floor_of(m) is None)
    assert not missing, f"add these modules to the floor map in {FLOOR_MAP}: {', '.join(missing)}"
    stale = sorted(n for n in floors if n not in core_modules() and n not in planned)
    assert not stale, f"the floor map in {FLOOR_MAP} names modules that do not exist: {', '.join(stale)}"


def test_each_module_imports_only_its_own_floor_or_below() -> None:
    graph = import_graph()
    upward = [
        f"{module} (floor {floor_of(module)}) imports {target} (floor {floor_of(target)}) at {where}"
        for module, targets in sorted(graph.items())
        for target, where in sorted(targets.items())
        if (floor_of(module) or 0) < (floor_of(target) or 0)
    ]
    assert not upward, f"imports that climb a floor (see the floor map in {FLOOR_MAP}):\n  " + "\n  ".join(upward)


def test_the_core_imports_no_plugin() -> None:
    """The core knows no concrete component: it never imports the built-in plugin packages (they
    are found through the entry-point group like any third party's)."""
    offenders = []
    for module, path in core_modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            offenders += [f"{module}:{node.lineno} {n}" for n in names if n.split(".")[0] in {"lamp_plugins", "lamp_tasks"}]
    assert not offenders, offenders


@pytest.mark.parametrize(
    ("lower", "upper"),
    [("run.prediction", "run.runner"), ("run.prediction", "train.training"), ("train.training", "run.runner")],
)
def test_the_named_floors_keep_their_order(lower: str, upper: str) -> None:
    """The prediction loop sits below the runner and the trainer, the trainer below the runner."""
    lower_floor, upper_floor = floor_of(f"{ROOT}.{lower}"), floor_of(f"{ROOT}.{upper}")
    assert lower_floor is not None and upper_floor is not None and lower_floor <= upper_floor
    assert f"{ROOT}.{upper}" not in import_graph()[f"{ROOT}.{lower}"]


def test_each_folder_of_the_core_says_what_lives_there_and_imports_nothing() -> None:
    """A folder's ``__init__`` opens with a docstring (what lives there, what it may import) and
    imports nothing: no re-exports, so importing one module of a folder loads no sibling, and no
    circle can close through a package."""
    packages = [m for m, path in core_modules().items() if path.name == "__init__.py" and m != ROOT]
    assert {"lamp_harness.base", "lamp_harness.plugin", "lamp_harness.run", "lamp_harness.report"} <= set(packages)
    for module in packages:
        tree = ast.parse(core_modules()[module].read_text(encoding="utf-8"))
        if module in {f"{ROOT}.cli", f"{ROOT}.report.leaderboard"}:  # a command and a package with a body of their own
            continue
        assert ast.get_docstring(tree), f"{module}: open its __init__.py with what lives there and what it may import"
        assert "may import" in ast.get_docstring(tree), module
        assert [type(node).__name__ for node in tree.body] == ["Expr"], f"{module}: its __init__.py holds only its docstring"


def test_the_wheel_lists_every_package_of_the_core() -> None:
    """``pyproject.toml`` names the packages one by one: a folder missing there would be missing from
    the wheel (an editable install would not notice)."""
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))
    listed = {p for p in config["tool"]["setuptools"]["packages"] if p.split(".")[0] == ROOT}
    assert listed == {m for m, path in core_modules().items() if path.name == "__init__.py"}
