"""The project's module import graph: its circles, and imports from a lower layer up into a higher one.

Usage: ``python -m tools.import_graph`` prints both and exits 1 if there are any. Every ``import``
counts, at module level or inside a function (a deferred import still ties the two modules together).
Layers, lowest first: ``handlers`` (shipped in every archive) < ``export`` and ``models`` (build time) <
``client`` (talks to and runs TorchServe; also used by the image) < ``bench``, ``deploy``,
``reliability``, ``tests``, ``tools`` (each built on the ones below).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # standard library only: no project import to measure
LAYERS = {"handlers": 0, "export": 1, "models": 1, "client": 2}
TOP = 3  # every other package of the project
PACKAGES = ("handlers", "export", "models", "client", "bench", "deploy", "reliability", "tests", "tools")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every Python module of the project's packages, by dotted name."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            found[module_name(path, root)] = path
    return found


def imports(path: Path, name: str, known: dict[str, Path]) -> set[str]:
    """The project modules ``path`` (module ``name``) imports, anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from a import b``: the module a.b if there is one, else a itself
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # ``import a.b.c`` of a name inside a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    known = modules(root)
    return {name: imports(path, name, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The import circles: each strongly connected group of two or more modules, sorted (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(groups)


def layer(module: str) -> int:
    return LAYERS.get(module.split(".")[0], TOP)


def upward(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(importer, imported) pairs where a lower layer imports a higher one."""
    return sorted((a, b) for a, targets in edges.items() for b in targets if layer(a) < layer(b))


def main() -> int:
    """Print the circles and the upward imports; exit 1 if there are any."""
    edges = graph()
    found = cycles(edges)
    up = upward(edges)
    for group in found:
        print("circle: " + " <-> ".join(group))
    for a, b in up:
        print(f"upward: {a} imports {b}")
    print(f"{len(edges)} modules, {sum(map(len, edges.values()))} imports: {len(found)} circles, {len(up)} upward")
    return 1 if found or up else 0


if __name__ == "__main__":
    sys.exit(main())
