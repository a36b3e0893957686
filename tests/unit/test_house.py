"""The house rules of the shared package (docs/architecture.md): no import circles, small modules, SQL in stores."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "layers" / "shared" / "incident_loop"
DEV = Path(__file__).resolve().parents[2] / "dev" / "incident_loop_dev"
MAX_LINES = 300


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> Iterator[str]:
    """Every module of the package this file imports, at any depth (lazy imports are arrows too)."""
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name in modules:
                yield name


def _graph(key: callable) -> dict[str, set[str]]:  # type: ignore[valid-type]
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        for target in _imports(path, modules):
            if key(target) != key(name):
                graph.setdefault(key(name), set()).add(key(target))
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_round_a_circle() -> None:
    assert _cycles(_graph(lambda name: name)) == []


def test_no_folder_imports_itself_round_a_circle() -> None:
    """Folders as rooms: loop/ may use stores/, but then no store may reach back into loop/."""

    def room(name: str) -> str:
        parts = name.split(".")
        return ".".join(parts[:2]) if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else name

    assert _cycles(_graph(room)) == []


@pytest.mark.parametrize("root", [PACKAGE, DEV], ids=["layer", "dev"])
def test_no_module_is_over_300_lines(root: Path) -> None:
    sizes = {str(p.relative_to(root)): len(p.read_text().splitlines()) for p in root.rglob("*.py")}
    long = {name: lines for name, lines in sizes.items() if lines > MAX_LINES}
    assert long == {}


SQL = re.compile(r"""["'](\s*)(SELECT|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+TABLE)\b""", re.I)


def test_sql_lives_only_in_stores_and_the_migration_runner() -> None:
    allowed = {PACKAGE / "migrate.py", PACKAGE / "db.py"}
    outside = sorted(
        str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
        if "stores" not in p.relative_to(PACKAGE).parts and p not in allowed and SQL.search(p.read_text())
    )
    assert outside == []


def test_the_rules_see_what_they_check() -> None:
    """The checks above would fail on a circle, a long module and SQL in a feature folder."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert len(_modules()) > 50
    assert SQL.search('"SELECT 1 FROM t"') and SQL.search("'  insert into t'")
