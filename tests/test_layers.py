"""The layers show in the imports: nothing imports upward, no two modules import each other
(directly or round a circle).  That each DVC stage depends on every module its command
imports is tools/dvc_yaml.py's check (tests/test_pipeline_dvc.py)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "study"
# bottom to top (docs/architecture.md); a module may import its own layer and those below
LAYERS = {
    "errors": 0, "params": 0, "seed": 0, "interrupt": 0,
    "engine": 1, "results.metrics": 1,
    "policies": 2, "workloads": 2, "measure": 2,
    "results": 3,
    "config": 4,
    "runner": 5, "calibration": 5,
    "analysis": 6,
    "report": 7,
    "api": 8, "cli": 8, "__main__": 8,
}


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in STUDY.rglob("*.py")}


def _imports(name: str) -> set[str]:
    """The study modules ``name`` imports anywhere in its file (function-level imports too)."""
    out = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("study"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in MODULES else node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("study")}
    return {m for m in out if m in MODULES and m != name}


GRAPH = {name: _imports(name) for name in MODULES}


def _layer(name: str) -> int:
    rest = name.split(".", 1)[1] if "." in name else ""
    for key in sorted(LAYERS, key=len, reverse=True):
        if rest == key or rest.startswith(key + "."):
            return LAYERS[key]
    return 8   # the package itself: re-exports the API


def test_nothing_imports_upward():
    upward = sorted((m, d) for m, deps in GRAPH.items() for d in deps if _layer(d) > _layer(m) and d != "study")
    assert upward == []


def test_no_import_cycle():
    # the package's own __init__ re-exports the API: edges into it (``study.__version__``) are no cycle
    graph = {m: {d for d in deps if d != "study"} for m, deps in GRAPH.items() if m != "study"}
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == []
