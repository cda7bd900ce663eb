"""``python -m study compare A B``: two runs' headline numbers side by side, with their intervals.

A and B are sweep directories (outputs/sweep/<name>) or outputs directories holding one sweep.
Cells are matched by their setting (machine, kernel, workload and its knobs, policy variant),
not by cell id, so runs with other replicates or rounds still line up.  Per setting: the
mean and 95% CI of the metric in A and in B, B/A with its 95% interval (normal approximation
from the two cells' standard errors), and a verdict, in the spirit of ``pyperf compare_to``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from study.cli import EXIT_OK, command
from study.cli.common import Parser

MAIN = "total_cycles_per_round"


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m study compare", description=__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", type=Path, metavar="A", help="a sweep directory (or an outputs directory with one sweep)")
    p.add_argument("b", type=Path, metavar="B", help="the other run")
    p.add_argument("--metric", default=MAIN, help="metric to compare (default: %(default)s)")
    p.add_argument("--all", action="store_true", help="list settings without a significant change too")
    return p


@command()
def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    import pandas as pd
    from scipy import stats

    from study.api import load
    from study.errors import ConfigError

    a, b = load(args.a), load(args.b)
    mean, low, n = f"{args.metric}.mean", f"{args.metric}.ci_low", f"{args.metric}.n"
    for res, name in ((a, "A"), (b, "B")):
        if mean not in res.cells.columns:
            metrics = sorted(c[:-5] for c in res.cells.columns if c.endswith(".mean"))
            raise ConfigError("--metric", f"{args.metric!r} is not a metric of {name} ({res.path}); "
                                          f"allowed: {', '.join(metrics)}")
    keys = ["machine", "kernel", "workload", "policy_variant"]
    knobs = sorted({c for c in a.cells.columns if c.startswith("workload.")}
                   & {c for c in b.cells.columns if c.startswith("workload.")})
    # name only the knobs that tell settings apart (all of them still match)
    both = pd.concat([a.cells[knobs], b.cells[knobs]])
    shown_knobs = [k for k in knobs if both[k].astype(str).nunique() > 1]

    def label(row) -> str:
        shown = " ".join(f"{k.split('.', 1)[1]}={row[k]:g}" if isinstance(row[k], float) else
                         f"{k.split('.', 1)[1]}={row[k]}" for k in shown_knobs if not pd.isna(row[k]))
        return f"{row['machine']} {row['kernel']} {row['workload']} {row['policy_variant']} {shown}".strip()

    def identity(row) -> tuple:
        return tuple(str(row[k]) for k in [*keys, *knobs])

    def index(res):
        return {identity(r): r for _, r in res.cells.iterrows() if not pd.isna(r[mean])}

    ia, ib = index(a), index(b)
    common = [k for k in ia if k in ib]
    print(f"A: {a.path} ({len(ia)} cells)\nB: {b.path} ({len(ib)} cells)\n"
          f"metric: {args.metric} (mean [95% CI]); B/A with its 95% interval\n")
    if not common:
        print("no setting is in both runs")
        return EXIT_OK
    names = {k: label(ia[k]) for k in common}
    width = max(len(v) for v in names.values())
    shown = faster = slower = 0
    for key in common:
        ra, rb = ia[key], ib[key]

        def se(r):
            t = stats.t.ppf(0.975, max(int(r[n]) - 1, 1)) if n in r and not pd.isna(r[n]) else 1.96
            return (r[mean] - r[low]) / t

        ratio = rb[mean] / ra[mean] if ra[mean] else float("nan")
        half = 1.96 * math.sqrt(se(ra) ** 2 + se(rb) ** 2) / abs(ra[mean]) if ra[mean] else float("nan")
        lo, hi = ratio - half, ratio + half
        if hi < 1:
            verdict, faster = f"B {1 / ratio:.3f}x faster", faster + 1
        elif lo > 1:
            verdict, slower = f"B {ratio:.3f}x slower", slower + 1
        else:
            verdict = "not significant"
            if not args.all:
                continue
        shown += 1
        print(f"{names[key]:{width}s}  A {ra[mean]:10.1f} [{ra[low]:10.1f}, {ra[f'{args.metric}.ci_high']:10.1f}]  "
              f"B {rb[mean]:10.1f} [{rb[low]:10.1f}, {rb[f'{args.metric}.ci_high']:10.1f}]  "
              f"B/A {ratio:.3f} [{lo:.3f}, {hi:.3f}]  {verdict}")
    hidden = len(common) - shown
    print(f"\n{len(common)} settings in both runs: B faster in {faster}, slower in {slower}, "
          f"no significant change in {len(common) - faster - slower}"
          + (f" (not listed; --all lists them)" if hidden and not args.all else ""))
    only = len(ia) - len(common), len(ib) - len(common)
    if any(only):
        print(f"settings only in A: {only[0]}, only in B: {only[1]}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
