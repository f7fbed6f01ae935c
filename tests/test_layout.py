"""The house: each layer imports only those below it, no import circle, light package faces that resolve."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "search"
# A layer imports only its own and lower ones; engine and store stand side by side.
LAYER = {"study": 0, "engine": 1, "store": 1, "results": 2, "run": 3}
TOP = 4  # bench, cli, the package face
BASE = {"search._lazy", "search._version", "search.interrupt"}  # imported from anywhere


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module of the package that ``path`` imports, at the top, in a function or for type checking."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("search"):
            folder = ROOT.parent / node.module.replace(".", "/")
            submodules = {f"{node.module}.{a.name}" for a in node.names if (folder / f"{a.name}.py").exists()}
            out.update(submodules)
            if len(submodules) < len(node.names):  # names of the module itself, not only its submodules
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("search"))
    return out


GRAPH = {_module(p): _imports(p) for p in ROOT.rglob("*.py")}


def _layer(module: str) -> int:
    parts = module.split(".")
    if module in BASE:
        return -1
    return LAYER.get(parts[1], TOP) if len(parts) > 1 else TOP


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_a_module_imports_no_higher_layer(module):
    higher = sorted(m for m in GRAPH[module] if _layer(m) > _layer(module)
                    and not (_layer(m) == _layer(module) == 1))
    sideways = sorted(m for m in GRAPH[module] if _layer(m) == _layer(module) == 1 and m.split(".")[1] !=
                      module.split(".")[1] and not m.endswith(".schema"))
    assert higher == [] and sideways == [], f"{module} imports {higher + sideways}"


def test_no_import_circle():
    def visit(node, path):
        if node in path:
            return path[path.index(node):] + [node]
        for nxt in GRAPH.get(node, ()):
            if nxt == node or nxt not in GRAPH or nxt == "search":
                continue
            found = visit(nxt, [*path, node])
            if found:
                return found
        return None

    for start in GRAPH:
        if start == "search":
            continue
        circle = visit(start, [])
        assert circle is None, " -> ".join(circle)


def test_the_study_definition_loads_no_heavy_library():
    code = ("import sys, search.study; "
            "print(sorted(m for m in ('numpy', 'tensorflow', 'keras', 'optuna', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("package", ["search", "search.study", "search.store", "search.results", "search.engine"])
def test_every_public_name_of_a_package_resolves(package):
    module = importlib.import_module(package)
    assert module.__all__ == sorted(module.__all__) or package in ("search", "search.study")
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"
    with pytest.raises(AttributeError):
        module.no_such_name  # noqa: B018
