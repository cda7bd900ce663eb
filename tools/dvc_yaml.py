"""Regenerate what dvc.yaml derives from the code: each stage's code deps and the plots.

    python tools/dvc_yaml.py          # rewrite dvc.yaml in place (prints what changed)
    python tools/dvc_yaml.py --check  # exit 1 if dvc.yaml is stale (tests/test_pipeline_dvc.py runs this)

A stage depends on every module its command imports, directly or not (function-level imports
included; a package's lazily loaded modules too), as the repository's files; a package whose
every module is needed is named as its directory.  The data deps, params, outs and comments of
each stage stay as written.  The ``plots:`` section comes from the figures' declarations
(study/analysis/series.py FIGURES).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "study"
# the packages the distribution ships (setup.py): the study, and its Hydra search-path plugin
PACKAGES = ("study", "hydra_plugins")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def imports(name: str) -> set[str]:
    """The study modules ``name`` imports anywhere in its file."""
    out = set()
    source = MODULES[name].read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGES):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in MODULES else node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith(PACKAGES)}
    if MODULES[name].name == "__init__.py":
        out |= loaded_by_package(name, source)
    return {m for m in out if m in MODULES and m != name}


def loaded_by_package(name: str, source: str) -> set[str]:
    """The modules a package's __init__ loads by name: the values of its ``_LAZY`` table, or every
    module of the package when it imports them all (``import_module(f"{__name__}.{...}")``)."""
    if "import_module(f\"{__name__}." in source:
        return {m for m in MODULES if m.rsplit(".", 1)[0] == name}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_LAZY" for t in node.targets):
            values = [v.value for v in getattr(node.value, "values", []) if isinstance(v, ast.Constant)]
            return {f"{name}.{v}" for v in values}
    return set()


GRAPH = {name: imports(name) for name in MODULES}


def closure(start: str) -> set[str]:
    """``start`` and everything it imports; the package's own __init__ loads its API lazily."""
    seen, todo = set(), [start, "study.__main__"]
    while todo:
        name = todo.pop()
        if name in seen or name == "study":
            continue
        seen.add(name)
        todo += GRAPH[name]
        # importing a module runs its packages' __init__ first
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(2, len(parts))]
    return seen


def code_deps(command: str) -> list[str]:
    """The repository paths a ``python -m study <command>`` stage depends on."""
    needed = {MODULES[m] for m in closure(f"study.cli.{command.replace('-', '_')}")}
    deps: list[str] = []
    for package in sorted({p.parent for p in needed}, key=lambda d: (len(d.parts), str(d))):
        if any(Path(d) in package.parents or Path(d) == package for d in map(lambda x: ROOT / x, deps)):
            continue
        inside = [p for p in MODULES.values() if package in p.parents or p.parent == package]
        if package not in (STUDY, ROOT / "hydra_plugins") and all(p in needed for p in inside):
            deps.append(package.relative_to(ROOT).as_posix())
    covered = [ROOT / d for d in deps]
    files = [p for p in needed if not any(c in p.parents for c in covered)]
    return sorted(deps + [p.relative_to(ROOT).as_posix() for p in files])


class _Unique(yaml.SafeLoader):
    """A loader that refuses a key given twice in one mapping (DVC refuses such a dvc.yaml)."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(k, deep=True) for k, _ in node.value]
        twice = sorted({k for k in keys if keys.count(k) > 1}, key=str)
        if twice:
            raise SystemExit(f"dvc.yaml: key {twice[0]!r} given twice (line {node.start_mark.line + 1})")
        return super().construct_mapping(node, deep=deep)


def regenerate(text: str) -> str:
    """dvc.yaml's text with each stage's code deps and the plots section derived anew."""
    sys.path.insert(0, str(ROOT))
    from study.analysis.series import BEGIN, dvc_section

    data = yaml.load(text, Loader=_Unique)
    # the generated section starts at its marker (an older marker's wording too)
    lines = text.split(BEGIN.split("(")[0], 1)[0].rstrip("\n").splitlines()
    out, stage, i = [], None, 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("  ") and not line.startswith("   ") and line.rstrip().endswith(":"):
            stage = line.strip().rstrip(":")
        out.append(line)
        if stage in data.get("stages", {}) and line.strip() == "deps:":
            i += 1
            data_deps = []
            while i < len(lines) and lines[i].startswith("      - "):
                entry = lines[i].strip()[2:]
                if not entry.startswith(tuple(f"{p}/" for p in PACKAGES)):
                    data_deps.append(entry)
                i += 1
            command = data["stages"][stage]["cmd"].split()[3]
            out += [f"      - {d}" for d in data_deps + code_deps(command)]
            continue
        i += 1
    return "\n".join(out) + "\n\n" + dvc_section()


def main(argv: list[str]) -> int:
    path = ROOT / "dvc.yaml"
    text = path.read_text()
    new = regenerate(text)
    if "--check" in argv:
        if new != text:
            print("dvc.yaml is stale: run `python tools/dvc_yaml.py`", file=sys.stderr)
            return 1
        return 0
    if new != text:
        path.write_text(new)
        print("dvc.yaml: rewritten")
    else:
        print("dvc.yaml: up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
