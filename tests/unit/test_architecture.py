"""The package's shape: no import circle, imports run one way (docs/architecture.md), imports on top.

Every ``import`` in ``freshcart/`` counts, the lazy ones inside functions too: a
circle hidden in a function is still a circle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "freshcart"

LAYERS = {
    "entry": ("freshcart.__main__", "freshcart.cli", "freshcart.pipeline"),
    "stage": ("freshcart.ingestion", "freshcart.simulator", "freshcart.features", "freshcart.stream",
              "freshcart.training", "freshcart.serving", "freshcart.monitoring", "freshcart.recommendation",
              "freshcart.services", "freshcart.privacy"),
    "core": ("freshcart", "freshcart.settings", "freshcart.settings_fields", "freshcart.credentials",
             "freshcart.schema", "freshcart.storage",
             "freshcart.kafka_io", "freshcart.kafka_acls", "freshcart.labels", "freshcart.privacy.pseudonym"),
}
"""The layers of docs/architecture.md, top first; a module belongs to the longest prefix that names it
(``freshcart`` itself names only the package's ``__init__``)."""
RANK = {"entry": 0, "stage": 1, "core": 2}


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.Module, name: str, is_package: bool, modules: set[str]) -> Iterator[str]:
    """The ``freshcart`` modules that a module's imports name (``from a import b`` names ``a.b`` when it is one)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            targets = [source, *(f"{source}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            while target and target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name:
                yield target


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, for every ``*.py`` under ``root``."""
    paths = {module_name(p, root): p for p in root.rglob("*.py")}
    modules = set(paths)
    return {name: set(imported(ast.parse(path.read_text()), name, path.name == "__init__.py", modules))
            for name, path in paths.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import circle once, as the modules along it (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer_of(module: str) -> str | None:
    best: tuple[int, str] | None = None
    for layer, prefixes in LAYERS.items():
        for prefix in prefixes:
            covers = module == prefix or (module.startswith(prefix + ".") and prefix != "freshcart")
            if covers and (best is None or len(prefix) > best[0]):
                best = (len(prefix), layer)
    return best[1] if best else None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """``a -> b`` for every import of a module of a higher layer, and every module of no layer."""
    problems = [f"{module}: in no layer of LAYERS" for module in graph if layer_of(module) is None]
    for module, targets in graph.items():
        for target in targets:
            low, high = layer_of(module), layer_of(target)
            if low and high and RANK[high] < RANK[low]:
                problems.append(f"{module} ({low}) imports {target} ({high})")
    return sorted(problems)


def late_imports(root: Path) -> list[str]:
    """Module-level imports below the first statement that is not an import (or the docstring)."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        body = ast.parse(path.read_text()).body
        started = False
        for position, node in enumerate(body):
            is_import = isinstance(node, (ast.Import, ast.ImportFrom))
            is_docstring = position == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            if is_import and started:
                problems.append(f"{path.relative_to(root.parent)}:{node.lineno}")
            elif not is_import and not is_docstring:
                started = True
    return problems


def test_no_import_circle() -> None:
    assert circles(import_graph(PACKAGE)) == []


def test_imports_run_from_entry_points_to_stages_to_core() -> None:
    assert upward_imports(import_graph(PACKAGE)) == []


def test_module_imports_stand_at_the_top() -> None:
    assert late_imports(PACKAGE) == []


@pytest.fixture()
def tangled(tmp_path: Path) -> Path:
    """A small package with each defect the checks look for."""
    root = tmp_path / "freshcart"
    (root / "cli").mkdir(parents=True)
    (root / "training").mkdir()
    files = {
        "__init__.py": "", "settings.py": "from freshcart.cli import app\n",
        "cli/__init__.py": "app = None\nfrom freshcart.cli import extra\n", "cli/extra.py": "",
        "training/__init__.py": "",
        "training/model.py": "def save():\n    from freshcart.training.fit import fit\n",
        "training/fit.py": "from .model import save\n",
        "odd.py": "",
    }
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def test_the_checks_find_circles_upward_and_late_imports(tangled: Path) -> None:
    graph = import_graph(tangled)
    assert circles(graph) == [["freshcart.training.fit", "freshcart.training.model"]]
    assert upward_imports(graph) == ["freshcart.odd: in no layer of LAYERS",
                                     "freshcart.settings (core) imports freshcart.cli (entry)"]
    assert late_imports(tangled) == ["freshcart/cli/__init__.py:2"]
