"""The server's package map (docs/architecture.md, "Which package may import
which") as a test: the shared layers import no slice, auth imports only the
shared layers, only the composition modules import the pages, and no two
packages import each other, directly or round a longer loop. Every import
counts, also ones inside functions or under TYPE_CHECKING: a cycle hidden in
a function is still a cycle in the design."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SERVER = Path(__file__).resolve().parents[1] / "server"
# Shared by every slice; they import nothing above them.
FOUNDATION = {"errors", "settings", "rules", "db", "web", "appkeys", "cli_support", "migrations"}
AUTH = {"auth"}
# They build the application from everything; nothing imports them.
COMPOSITION = {"app", "cli", "routes_doc"}
PAGES = {"pages"}


def _package_of(path: Path) -> str:
    parts = path.relative_to(SERVER).parts
    return parts[0].removesuffix(".py")


def import_graph() -> dict[str, dict[str, list[str]]]:
    """package -> imported package -> files that import it."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in SERVER.rglob("*.py"):
        source = _package_of(path)
        if source == "__init__":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("server."):
                    targets = [node.module.split(".")[1]]
                elif node.module == "server":
                    targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name.split(".")[1] for a in node.names if a.name.startswith("server.")]
            for target in targets:
                if target != source:
                    graph[source][target].append(str(path.relative_to(SERVER.parent)))
    return graph


def _cycle_from(graph: dict[str, dict[str, list[str]]], start: str) -> list[str] | None:
    stack = [(start, [start])]
    seen = set()
    while stack:
        node, trail = stack.pop()
        for nxt in graph.get(node, {}):
            if nxt == start:
                return [*trail, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*trail, nxt]))
    return None


def test_no_two_server_packages_import_each_other() -> None:
    graph = import_graph()
    cycles = {tuple(c) for p in graph if (c := _cycle_from(graph, p))}
    details = [" -> ".join(c) + "  (" + "; ".join(
        f"{a}->{b}: {graph[a][b][0]}" for a, b in zip(c, c[1:], strict=False)) + ")" for c in sorted(cycles)]
    assert not cycles, "import cycles between server packages:\n" + "\n".join(details)


def test_the_shared_layers_import_no_slice() -> None:
    graph = import_graph()
    wrong = [f"{a} imports {b} ({files[0]})" for a in FOUNDATION for b, files in graph.get(a, {}).items()
             if b not in FOUNDATION]
    assert not wrong, "\n".join(wrong)


def test_auth_imports_only_the_shared_layers() -> None:
    graph = import_graph()
    wrong = [f"auth imports {b} ({files[0]})" for b, files in graph.get("auth", {}).items() if b not in FOUNDATION]
    assert not wrong, "\n".join(wrong)


def test_only_the_composition_modules_import_the_pages_and_nothing_imports_them() -> None:
    graph = import_graph()
    wrong = [f"{a} imports {b} ({files[0]})" for a, targets in graph.items() for b, files in targets.items()
             if (b in PAGES and a not in COMPOSITION) or (b in COMPOSITION and a not in COMPOSITION)]
    assert not wrong, "\n".join(wrong)


def test_every_server_package_is_placed_on_the_map() -> None:
    """A new package gets a place in docs/architecture.md's map (and here)."""
    packages = {p.name for p in SERVER.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in SERVER.glob("*.py") if p.stem != "__init__"}
    doc = (SERVER.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = sorted(n for n in packages | modules if f"server/{n}" not in doc)
    assert not missing, f"docs/architecture.md does not place: {', '.join(missing)}"
