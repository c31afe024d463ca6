"""The package's shape: small modules, no import cycle, no private cross-module imports, no history in code."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "metalearn_sep"
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` but those under ``if TYPE_CHECKING:`` (imports for type hints only, never run)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            yield from (n for child in node.orelse for n in [child, *runtime_nodes(child)])
            continue
        yield node
        yield from runtime_nodes(node)


def imported_names(name: str, path: Path) -> list[tuple[str, str | None]]:
    """``(module, imported name or None)`` for every import statement a module runs, at any depth (functions too)."""
    is_package = path.name == "__init__.py"
    found = []
    for node in runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = name if is_package else name.rpartition(".")[0]
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = ".".join(p for p in (base if node.level else "", node.module or "") if p)
            found += [(target, alias.name) for alias in node.names]
    return found


def dependencies(name: str) -> set[str]:
    """The package modules ``name`` imports: ``from a import b`` counts as ``a.b`` when that is a module, else ``a``."""
    edges = set()
    for target, item in imported_names(name, MODULES[name]):
        if item is not None and f"{target}.{item}" in MODULES:
            edges.add(f"{target}.{item}")
        elif target in MODULES:
            edges.add(target)
    return edges - {name}


def test_every_module_is_shorter_than_the_limit():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_in_the_package():
    graph = {name: dependencies(name) for name in MODULES}
    assert "metalearn_sep.checkpoint" in graph["metalearn_sep.train"]  # the walk sees relative imports
    assert "metalearn_sep.recipe" in graph["metalearn_sep.__main__"]  # and imports inside functions
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_separation_does_not_depend_on_training():
    assert not {"metalearn_sep.train", "metalearn_sep.recipe"} & dependencies("metalearn_sep.separate")
    assert not {"metalearn_sep.train", "metalearn_sep.recipe"} & dependencies("metalearn_sep.streaming")


def test_no_private_name_is_imported_from_another_module():
    private = [
        f"{name} imports {item} from {target}"
        for name, path in MODULES.items()
        for target, item in imported_names(name, path)
        if item and item.startswith("_") and not item.startswith("__") and target.startswith("metalearn_sep")
    ]
    assert not private, private


@pytest.mark.parametrize("folder", ["metalearn_sep", "configs"])
def test_no_dated_history_in_code_or_configs(folder):
    pattern = re.compile(r"20[0-9]{2}-[0-9]{2}-[0-9]{2}|just before|throw-away|on a busy machine")
    hits = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted((ROOT / folder).rglob("*"))
        if path.suffix in (".py", ".json")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert not hits, "history belongs in benchmarks/RESULTS.md:\n" + "\n".join(hits)
