"""``python -m study ask key=a,b ...``: one question in one command, run (cached) and answered.

    python -m study ask workload=uffd_wp workload.threads=8,16 kernel=rfc_base,mainline
    python -m study ask workload=mprotect_toggle workload.threads=2,48 workload.working_set=0,64 --report /tmp/q

Every ``key=a,b`` (Hydra's sweep syntax, as ``sweep -m``) is an axis of the question; every
plain ``key=value`` a setting of it.  The command plans two sub-grids with the default
sweep's run settings: strict and relaxed at every setting, and relaxed with each RFC patch
switched off (``policy.without: [each]``), so that the patch that drives each answer is
measured, not guessed.  The cells go to ``<out>/sweep/ask-<hash of the question>/``
(a repeated question reuses them); nothing of the default pipeline's outputs is touched.
Per setting it prints the speedup strict/relaxed of total cycles per round with its 95% Monte
Carlo CI, the verdict at the fitted costs (no ensemble is run for a question: the model
interval of ``python -m study ensemble`` is the default sweep's), and why (study.analysis.why:
the part of the cycles that moved, the event behind it, the patch that drives it).  With
``--report DIR`` the question's sweep, its analysis and a small report go to DIR instead.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

from study.cli import EXIT_FAILED, EXIT_OK, command
from study.cli.common import Parser, add_ray_options, check_ray_options
from study.errors import ConfigError

BASE = "sweep=default"      # the run settings a question takes (replicates, rounds, warm-up, seed)
MAX_SETTINGS = 64           # settings per question (each runs 2 + one per RFC patch cells)


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m study ask", description=__doc__.split("\n\n")[0],
               formatter_class=argparse.RawDescriptionHelpFormatter,
               epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--out", type=Path, default=Path("outputs"), metavar="DIR",
                   help="where the question's cells are kept: DIR/sweep/ask-<hash>/ (default: %(default)s)")
    p.add_argument("--report", type=Path, default=None, metavar="DIR",
                   help="write the question's sweep, analysis and report (report.html, report.pdf) into DIR")
    add_ray_options(p)
    p.add_argument("words", nargs="*", metavar="key=value", help="the question: key=a,b axes, key=value settings")
    return p


def question_name(overrides: list[str], grid: dict) -> str:
    """``ask-<12 hex>``: the same question (in any word order) is the same directory."""
    text = json.dumps({"overrides": sorted(overrides), "grid": {k: list(map(str, v)) for k, v in sorted(grid.items())}})
    return "ask-" + hashlib.sha256(text.encode()).hexdigest()[:12]


@command(interrupted="finished cells are kept and reused when the question is asked again")
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    for word in args.words:
        if "=" not in word:
            raise ConfigError(word, "expected key=value or key=a,b (e.g. workload.threads=8,16)")
    check_ray_options(args)
    from study.cli.sweep import split_sweep_overrides

    plain, axes = split_sweep_overrides(list(args.words))
    for key in ("policy", "policy.without", "sweep", "sweep.name", "run.output_dir"):
        if any(o.split("=", 1)[0] == key for o in plain) or key in axes:
            raise ConfigError(key, "ask plans the policies and the sweep itself; leave it out")
    out = args.report if args.report is not None else args.out
    name = question_name(plain, axes)
    overrides = [BASE, *plain, f"run.output_dir={out}", f"sweep.name={name}"]
    if args.num_cpus is not None:
        overrides.append(f"ray.num_cpus={args.num_cpus}")
    grids = [dict(axes, policy=["strict", "relaxed"]), dict(axes, policy=["relaxed"], **{"policy.without": ["each"]})]
    from study.runner import plan, run
    from study.runner.sweep import SweepFailed

    question = plan(overrides, grid=grids, name=name)
    settings = {gc.cell.pair_id for gc in question.cells}
    if len(settings) > MAX_SETTINGS:
        raise ConfigError("ask", f"the question has {len(settings)} settings, more than {MAX_SETTINGS}; "
                                 "ask fewer at a time, or write a sweep (conf/sweep/) and run it")
    start = time.perf_counter()
    executor = None
    if args.serial:
        from study.runner import SerialExecutor

        executor = SerialExecutor()
    try:
        run(question, executor=executor)
    except SweepFailed as err:
        print(f"error: ask {name}: {err}", file=sys.stderr)
        return EXIT_FAILED
    answer(out, name)
    if args.report is not None:
        from study.analysis.run import analyze
        from study.report.build import build

        analyze(args.report, name)
        paths = build(args.report)
        print(f"report: {', '.join(str(p) for p in paths)}")
    print(f"({time.perf_counter() - start:.0f} s; cells in {out / 'sweep' / name}; conditions: "
          f"python -m study conditions --sweep {name} --out {out})")
    return EXIT_OK


def answer(out: Path, name: str) -> None:
    """Per setting: kernel, the knobs asked, speedup [95% CI], verdict, why."""
    from study.analysis import schema
    from study.analysis.load import load_sweep
    from study.analysis.run import compute
    from study.report import numbers as fmt

    results = compute(load_sweep(out, name))
    main = results.paired_main
    why = dict(zip(results.why["pair_id"], results.why["text"])) if not results.why.empty else {}
    varied = [k for k in schema.varied_knobs(main)]
    for row in main.sort_values(["machine_label", "workload", *varied], kind="stable").to_dict("records"):
        knobs = " ".join(f"{k.split('.', 1)[1]}={fmt.plain(row[k])}" for k in varied)
        print(f"{row['workload']} on {row['machine_label']}{' ' + knobs if knobs else ''}: "
              f"{fmt.ratio(row['speedup'], row['speedup_low'], row['speedup_high'])} \u2014 {row['verdict']} "
              f"(at the fitted costs; Monte Carlo CI)")
        if row["pair_id"] in why:
            print(f"  why: {why[row['pair_id']]}")
