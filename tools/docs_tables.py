"""Regenerate the documentation's tables from the code that declares what they list.

    python tools/docs_tables.py          # rewrite the generated sections in place (prints what changed)
    python tools/docs_tables.py --check  # exit 1 if one is stale or missing (tests/test_docs.py runs this)

A generated section of README.md or docs/*.md is delimited by

    <!-- generated: NAME -->
    ...
    <!-- end generated -->

and holds exactly what ``TABLES[NAME]`` makes of the registries: the RFC patches and the kernel
facts (study/policies/changes.py), the workloads (study.workloads.WORKLOADS and each class's
``describe()``, with the values of its option file conf/workload/<name>.yaml), the machine
declaration (study/engine/machine.py Machine and Costs) and the shipped machine presets, the
run, ray and limits settings (study/config/settings.py, their values in conf/config.yaml), the
metrics and counters (study/results/metrics.py, study/engine/ops.py) and the figures
(study/analysis/series.py).  Edit the code, then run this; every table must stand somewhere.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path
from typing import Any, Callable

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from study.config.settings import LimitsConfig, RayConfig, RunConfig, SweepConfig  # noqa: E402
from study.engine.machine import ByDistance, Costs, Machine  # noqa: E402
from study.engine.ops import COUNTERS  # noqa: E402
from study.params import describe  # noqa: E402
from study.policies import PRESETS, Kernel, acts_on  # noqa: E402
from study.policies.changes import FACTS, PATCHES  # noqa: E402
from study.results.metrics import METRICS  # noqa: E402
from study.workloads import WORKLOADS  # noqa: E402
from study.workloads.spec import WorkloadSpec  # noqa: E402

CONF = ROOT / "conf"
BEGIN = re.compile(r"<!-- generated: ([a-z0-9-]+) -->\n")
END = "<!-- end generated -->"
# where generated sections may stand
DOCS = ("README.md", "docs")


# ------------------------------------------------------------------ formatting


def cell(value: Any) -> str:
    """One table cell: a value as YAML spells it, pipes escaped, no line breaks."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null"
    elif value == "":
        text = '""'
    elif isinstance(value, float):
        text = f"{value:g}" if abs(value) < 1e6 else f"{value:.0f}"
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def code(value: Any) -> str:
    return f"`{cell(value)}`"


def allowed(declared: dict) -> str:
    """What a declared field allows; a switch is true or false (the builder's one check)."""
    return "true or false" if declared["type"] == "bool" else cell(declared["allowed"])


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def option_file(group: str, name: str) -> dict:
    """A shipped option file as plain data, its defaults list dropped."""
    data = yaml.safe_load((CONF / group / f"{name}.yaml").read_text())
    data.pop("defaults", None)
    return data


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


# ------------------------------------------------------------------ policies and kernels


def kernels() -> dict[str, Kernel]:
    """The shipped kernels, the default (conf/config.yaml's defaults list) first."""
    default = next(d["kernel"] for d in yaml.safe_load((CONF / "config.yaml").read_text())["defaults"]
                   if isinstance(d, dict) and "kernel" in d)
    names = sorted(options("kernel"), key=lambda n: (n != default, n))
    return {name: Kernel.from_dict(option_file("kernel", name)) for name in names}


def patches() -> str:
    """The RFC patch by patch: the registry's switches, what each changes in the engines."""
    rows = [[cell(p.patches or "—"), code(p.name), cell(p.title), code(p.function), cell(p.doc)] for p in PATCHES]
    return table(["RFC patch", "switch", "subject", "kernel function", "what the engine does when it is on"], rows)


def switches() -> str:
    """The switches as a policy file sees them: which preset has them on, where they are no-ops."""
    shipped = options("policy")
    known = kernels()
    rows = []
    for p in PATCHES:
        on = [code(n) for n in shipped if n in PRESETS and getattr(PRESETS[n], p.name)]
        noop = [code(k) for k, kernel in known.items() if not acts_on(p.name, kernel)]
        rows.append([code(p.name), cell(p.where), cell(p.title), ", ".join(on) or "—", ", ".join(noop) or "—"])
    return table(["switch", "RFC patch", "subject", "on in", "a no-op on (the kernel carries it)"], rows)


def facts() -> str:
    """The kernels' own facts, with each shipped kernel's value."""
    known = kernels()
    header = ["fact", *(code(k) for k in known), "kernel function", "where it came from", "what it means"]
    rows = [[code(f.name), *(cell(getattr(k, f.name)) for k in known.values()), code(f.function), cell(f.commit),
             cell(f.doc)] for f in FACTS]
    rows.insert(0, [code("release"), *(cell(k.release) for k in known.values()), "—", "—", "the tree, in words"])
    return table(header, rows)


# ------------------------------------------------------------------ workloads


def _declared(cls: type) -> dict[str, dict]:
    return describe(cls, skip=("name",))


def workload_defaults(name: str) -> dict[str, Any]:
    """Every knob's value under ``workload=<name>``: its option file, else the class's default."""
    return {**{k: d["default"] for k, d in _declared(WORKLOADS[name]).items()}, **option_file("workload", name)}


def workload_common() -> str:
    """The knobs every workload has, with each workload's value in its option file."""
    names = list(WORKLOADS)
    values = {n: workload_defaults(n) for n in names}
    rows = [[code(k), cell(d["type"]), cell(d["unit"]), allowed(d), *(cell(values[n][k]) for n in names),
             cell(d["doc"])] for k, d in _declared(WorkloadSpec).items()]
    return table(["knob", "type", "unit", "allowed", *(code(n) for n in names), "what it is"], rows)


def workloads() -> str:
    """Per workload: its words, the knobs it adds or redeclares, its threads' roles, its calls and its
    analysis hooks."""
    common = _declared(WorkloadSpec)
    parts = []
    for name, cls in WORKLOADS.items():
        desc, defaults = cls.describe(), workload_defaults(name)
        own = {k: d for k, d in desc["knobs"].items()
               if k not in common or {**d, "default": None} != {**common[k], "default": None}}
        parts.append(f"#### `{name}`: {desc['title']}\n\n{desc['about']}")
        if own:
            parts.append(table(["knob", "type", "unit", "default", "allowed", "what it is"],
                               [[code(k) + ("" if k not in common else " (redeclared)"), cell(d["type"]),
                                 cell(d["unit"]), cell(defaults[k]), allowed(d), cell(d["doc"])]
                                for k, d in own.items()]))
        parts.append(table(["thread role", "hot set knob", "default", "who"],
                           [[cell(role), code(r["knob"]), cell(defaults[r["knob"]]), cell(r["words"])]
                            for role, r in desc["roles"].items()]))
        parts.append(table(["call", "metric", "what it is", "may flush"],
                           [[cell(c["text"]), code(f"lat_{label}"), cell(c["doc"]), cell(c["flushes"])]
                            for label, c in desc["calls"].items()]))
        hooks = [f"crossover along {', '.join(code(k) for k in desc['crossover']) or '—'}"]
        if desc["panel"]:
            hooks.append(f"its panel draws {', '.join(code(m) for m in desc['panel']['metrics'])} along the first "
                         f"of {', '.join(code(k) for k in desc['panel']['x'])} the sweep varies, beside relaxed "
                         f"without {code(desc['panel']['idea'])}")
        if desc["predicted_strict_share"]:
            hooks.append(f"{code('strict_share_' + desc['predicted_strict_share'])} is drawn against 1-(1-d)^k")
        parts.append("Analysis: " + "; ".join(hooks) + ".")
    return "\n\n".join(parts)


# ------------------------------------------------------------------ machines


def machine() -> str:
    """The machine's facts (every field of Machine but its costs)."""
    rows = [[code(k), cell(d["type"]), cell(d["unit"]), cell(d["default"]), allowed(d), cell(d["doc"])]
            for k, d in describe(Machine).items() if k != "costs"]
    return table(["key", "type", "unit", "default", "allowed", "what it is"], rows)


def costs() -> str:
    """The event costs (Costs), a distance class's three values as smt / core / socket."""
    defaults = Costs()
    rows = []
    for k, d in describe(Costs).items():
        value = getattr(defaults, k)
        if isinstance(value, ByDistance):
            shown = " / ".join(cell(getattr(value, f.name)) for f in dataclasses.fields(ByDistance))
            rows.append([code(f"costs.{k}.{{smt,core,socket}}"), shown, cell(d["doc"])])
        else:
            rows.append([code(f"costs.{k}"), cell(value), cell(d["doc"])])
    return table(["key (cycles, each in [0, 1e8])", "default", "the event"], rows)


def machine_presets() -> str:
    """The shipped machine presets' main facts."""
    rows = []
    for name in options("machine"):
        m = Machine.from_dict(option_file("machine", name))
        rows.append([code(name), cell(m.calibrated), f"{m.sockets} x {m.cores_per_socket} x {m.smt} = {m.n_cpus}",
                     cell(m.apic_mode), cell(m.pti), cell(m.virt), cell(m.dirty_walk), cell(m.stlb_entries)])
    return table(["preset", "calibrated", "CPUs (sockets x cores x smt)", "apic_mode", "pti", "virt", "dirty_walk",
                  "stlb_entries"], rows)


# ------------------------------------------------------------------ settings, results, figures


def settings(node: str, cls: type) -> Callable[[], str]:
    def make() -> str:
        values = yaml.safe_load((CONF / "config.yaml").read_text()).get(node, {})
        rows = [[code(f"{node}.{k}"), cell(values.get(k, d["default"])), cell(d["unit"]), allowed(d),
                 cell(d["doc"])] for k, d in describe(cls).items()]
        return table(["key", "default (conf/config.yaml)", "unit", "allowed", "what it is"], rows)
    return make


def sweep_settings() -> str:
    rows = [[code(f"sweep.{k}"), cell(d["default"]) if d["default"] != "???" else "—", cell(d["unit"]),
             allowed(d), cell(d["doc"])] for k, d in describe(SweepConfig).items()]
    return table(["key", "default", "unit", "allowed", "what it is"], rows)


def metrics() -> str:
    rows = [[code(m.name + ("<label>" if m.family else "")), cell(m.unit), cell(m.per), cell(m.doc)] for m in METRICS]
    return table(["metric", "unit", "one value per", "what it is"], rows)


def counters() -> str:
    rows = [[code(f"count.{name}"), cell(unit), cell(doc)] for name, (unit, doc) in COUNTERS.items()]
    return table(["column", "counts (per round)", "what it counts"], rows)


def figures() -> str:
    from study.analysis.series import FIGURES

    rows = [[code(name) + (f" (one per workload: `<workload>{f.suffix}`)" if f.suffix else ""), cell(f.title),
             code(f.x), ", ".join(code(y) for y in f.y)] for name, f in FIGURES.items()]
    return table(["figure", "title", "x", "y"], rows)


TABLES: dict[str, Callable[[], str]] = {
    "patches": patches,
    "switches": switches,
    "facts": facts,
    "workload-common": workload_common,
    "workloads": workloads,
    "machine": machine,
    "costs": costs,
    "machine-presets": machine_presets,
    "run-settings": settings("run", RunConfig),
    "ray-settings": settings("ray", RayConfig),
    "limits": settings("limits", LimitsConfig),
    "sweep-settings": sweep_settings,
    "metrics": metrics,
    "counters": counters,
    "figures": figures,
}


# ------------------------------------------------------------------ the files


def documents() -> list[Path]:
    found = []
    for entry in DOCS:
        path = ROOT / entry
        found += sorted(path.glob("*.md")) if path.is_dir() else [path]
    return found


def regenerate(text: str, where: str, made: dict[str, str], seen: set[str]) -> str:
    """``text`` with every generated section made anew (``made``: name -> content, cached)."""
    out, pos = [], 0
    for match in BEGIN.finditer(text):
        if match.start() < pos:
            continue
        name = match.group(1)
        if name not in TABLES:
            raise SystemExit(f"{where}: unknown generated section {name!r}; known: {', '.join(TABLES)}")
        end = text.find(END, match.end())
        if end < 0:
            raise SystemExit(f"{where}: generated section {name!r} has no {END!r}")
        if name not in made:
            made[name] = TABLES[name]()
        seen.add(name)
        out += [text[pos:match.end()], "\n", made[name], "\n\n"]
        pos = end
    return "".join(out) + text[pos:]


def main(argv: list[str]) -> int:
    check = "--check" in argv
    made: dict[str, str] = {}
    seen: set[str] = set()
    stale = []
    for path in documents():
        text = path.read_text()
        new = regenerate(text, path.relative_to(ROOT).as_posix(), made, seen)
        if new != text:
            stale.append(path.relative_to(ROOT).as_posix())
            if not check:
                path.write_text(new)
    missing = [name for name in TABLES if name not in seen]
    if check:
        if stale:
            print(f"stale generated tables in {', '.join(stale)}: run `python tools/docs_tables.py`", file=sys.stderr)
        if missing:
            print(f"generated tables placed nowhere: {', '.join(missing)}", file=sys.stderr)
        return 1 if stale or missing else 0
    print("\n".join(f"{p}: rewritten" for p in stale) or "docs: up to date")
    if missing:
        print(f"generated tables placed nowhere: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
