"""The shape of the package: no import cycles, lazy imports that say why, small modules.

The layers themselves are an import-linter contract (``pyproject.toml``, run by
``lint-imports`` in CI); these are the rules it cannot state.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mreg"
MAX_LINES = 400


def modules() -> dict[str, Path]:
    """Every module of mreg by dotted name."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _type_checking_only(parents: list[ast.AST]) -> bool:
    return any(isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING" for node in parents)


def imports(path: Path) -> list[tuple[ast.Import | ast.ImportFrom, list[ast.AST]]]:
    """Every import statement of a module with the nodes that enclose it."""
    found = []
    stack: list[tuple[ast.AST, list[ast.AST]]] = [(ast.parse(path.read_text()), [])]
    while stack:
        node, parents = stack.pop()
        for child in ast.iter_child_nodes(node):
            stack.append((child, [*parents, node]))
        if isinstance(node, (ast.Import, ast.ImportFrom)) and not _type_checking_only(parents):
            found.append((node, parents))
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the mreg modules it imports, function-local imports included."""
    known = modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for node, _ in imports(path):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                targets = [node.module or "", *(f"{node.module}.{alias.name}" for alias in node.names)]
            graph[name] |= {target for target in targets if target in known and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, targets = work[-1]
            target = next(targets, None)
            if target is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
            elif target not in index:
                index[target] = low[target] = len(index)
                stack.append(target)
                on_stack.add(target)
                work.append((target, iter(sorted(graph[target]))))
            elif target in on_stack:
                low[node] = min(low[node], index[target])
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_of_mreg_imports_itself_back() -> None:
    assert cycles(import_graph()) == []


def test_every_lazy_import_says_why() -> None:
    """An import inside a function exists for start-up time only, and says so on its line."""
    silent = []
    for name, path in modules().items():
        lines = path.read_text().splitlines()
        for node, parents in imports(path):
            if not any(isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef)) for parent in parents):
                continue
            statement = lines[node.lineno - 1 : node.end_lineno]
            group = node.lineno - 2  # the imports just above it share one reason
            while group >= 0 and lines[group].strip().startswith(("import ", "from ")) and "#" not in lines[group]:
                group -= 1
            above = lines[group].strip() if group >= 0 else ""
            explained = any("#" in line for line in statement) or (above.startswith(("import ", "from ", "#")) and "#" in above)
            if not explained:
                silent.append(f"{name}:{node.lineno}")
    assert silent == []


@pytest.mark.parametrize("name", sorted(modules()))
def test_modules_stay_small(name: str) -> None:
    """Every module can be read in one sitting."""
    assert len(modules()[name].read_text().splitlines()) <= MAX_LINES
