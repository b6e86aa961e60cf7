"""The import graph of our packages, read from the source (no module is imported).

Every ``import`` and ``from ... import`` counts, at module level or inside a
function: an import hidden in a function body still ties two rooms
together, and a cycle held together that way is still a cycle.  Only
imports under ``if TYPE_CHECKING:`` are left out (they never run).
Relative imports are resolved against the importing module's package, and
``from package import name`` counts as importing ``package.name`` when that
is a module, else as importing ``package`` (its ``__init__``).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("protocol", "peer", "node", "gateway")


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` (a module of ours, or the top-level name of another)."""

    source: str
    target: str
    line: int
    lazy: bool
    """Inside a function body rather than at module level."""


@dataclass
class ImportGraph:
    modules: dict[str, Path]
    edges: list[Edge] = field(default_factory=list)

    def ours(self) -> dict[str, set[str]]:
        """Module -> the modules of ours it imports."""
        out: dict[str, set[str]] = {m: set() for m in self.modules}
        for edge in self.edges:
            if edge.target in self.modules and edge.target != edge.source:
                out[edge.source].add(edge.target)
        return out

    def cycles(self) -> list[list[str]]:
        """Strongly connected components with more than one module (Tarjan, iterative)."""
        graph = self.ours()
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on_stack: set[str] = set()
        found: list[list[str]] = []
        counter = 0
        for root in sorted(graph):
            if root in index:
                continue
            work: list[tuple[str, list[str]]] = [(root, sorted(graph[root]))]
            index[root] = low[root] = counter
            counter += 1
            stack.append(root)
            on_stack.add(root)
            while work:
                node, pending = work[-1]
                if pending:
                    child = pending.pop()
                    if child not in index:
                        index[child] = low[child] = counter
                        counter += 1
                        stack.append(child)
                        on_stack.add(child)
                        work.append((child, sorted(graph[child])))
                    elif child in on_stack:
                        low[node] = min(low[node], index[child])
                    continue
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
        return found


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def build(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> ImportGraph:
    modules = {
        module_name(path, root): path
        for package in packages
        if (root / package).is_dir()
        for path in sorted((root / package).rglob("*.py"))
    }
    graph = ImportGraph(modules)

    def resolve(name: str) -> str:
        """The longest prefix of ``name`` that is one of our modules, else its top-level name."""
        probe = name
        while probe:
            if probe in modules:
                return probe
            probe = probe.rpartition(".")[0]
        return name.split(".")[0]

    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]

        def visit(node: ast.AST, lazy: bool) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and _is_type_checking(child.test):
                    for branch in child.orelse:
                        visit(branch, lazy)
                    continue
                inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                targets: list[str] = []
                if isinstance(child, ast.Import):
                    targets = [alias.name for alias in child.names]
                elif isinstance(child, ast.ImportFrom):
                    if child.level:
                        base = package.split(".")[: len(package.split(".")) - child.level + 1]
                        source = ".".join(base + ([child.module] if child.module else []))
                    else:
                        source = child.module or ""
                    # ``from pkg import sub`` imports the submodule; only names that are
                    # not modules come from ``pkg`` itself (its ``__init__``).
                    targets = [
                        f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                        for alias in child.names
                    ]
                for target in targets:
                    resolved = resolve(target)
                    if resolved != module:
                        graph.edges.append(Edge(module, resolved, child.lineno, inner))
                visit(child, inner)

        visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), False)
    return graph
