"""``python -m study compare A B``: two runs side by side, the largest changes first.

A and B are sweep directories (anywhere: outputs/sweep/<name>, a copy, another machine's run)
or outputs directories holding one sweep.  Settings are matched by what they are (machine,
kernel, workload and its knobs, policy variant), not by cell id, so runs with other
replicates or rounds still line up.

By default, per cell: the mean and 95% CI of the metric in A and in B, B/A with its 95%
interval (normal approximation from the two cells' standard errors), and a verdict with the
report's practical threshold (study.analysis.verdict.THRESHOLD, 2%): "B faster" or "B slower"
only when the whole interval is beyond it, "no practical change" when it lies within it,
"not significant" otherwise.  ``--speedups``: per setting, the speedup strict/relaxed of the
metric in A and in B, with their intervals and each run's verdict, and B's speedup over A's.
Rows are sorted by the size of the change.
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
    p.add_argument("--speedups", action="store_true",
                   help="compare each setting's speedup strict/relaxed (and verdict) instead of each cell")
    p.add_argument("--all", action="store_true", help="list settings without a practical change too")
    return p


def ratio_interval(a_mean, a_se, b_mean, b_se) -> tuple[float, float, float]:
    """b/a with its 95% interval (delta method on the two independent means)."""
    if not a_mean or not b_mean:
        return math.nan, math.nan, math.nan
    r = b_mean / a_mean
    half = 1.96 * abs(r) * math.sqrt((a_se / a_mean) ** 2 + (b_se / b_mean) ** 2)
    return r, r - half, r + half


def verdict(lo: float, hi: float, threshold: float) -> str:
    """'faster' (B below A by more than the threshold), 'slower', 'no practical change' or
    'not significant', from the interval of B/A."""
    if hi < 1 - threshold:
        return "faster"
    if lo > 1 + threshold:
        return "slower"
    if 1 - threshold <= lo and hi <= 1 + threshold:
        return "no practical change"
    return "not significant"


@command()
def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    import pandas as pd

    from study.analysis import schema
    from study.analysis.verdict import THRESHOLD
    from study.api import load
    from study.errors import ConfigError

    a, b = load(args.a), load(args.b)
    mean = f"{args.metric}.mean"
    for res, name in ((a, "A"), (b, "B")):
        if mean not in res.cells.columns:
            metrics = sorted(c[:-5] for c in res.cells.columns if c.endswith(".mean"))
            raise ConfigError("--metric", f"{args.metric!r} is not a metric of {name} ({res.path}); "
                                          f"allowed: {', '.join(metrics)}")
    knobs = sorted({c for c in a.cells.columns if c.startswith("workload.")}
                   & {c for c in b.cells.columns if c.startswith("workload.")})
    both = pd.concat([a.cells[knobs], b.cells[knobs]])
    shown_knobs = [k for k in knobs if both[k].astype(str).nunique() > 1]   # the knobs that tell settings apart
    setting = ["machine", "kernel", "workload", *knobs]

    def label(row, variant: bool = True) -> str:
        shown = " ".join(f"{k.split('.', 1)[1]}={row[k]:g}" if isinstance(row[k], float) else
                         f"{k.split('.', 1)[1]}={row[k]}" for k in shown_knobs if not pd.isna(row[k]))
        policy = f" {row['policy_variant']}" if variant else ""
        return f"{row['machine']} {row['kernel']} {row['workload']}{policy} {shown}".strip()

    def se(row, metric: str) -> float:
        from scipy import stats

        n = row.get(f"{metric}.n")
        t = stats.t.ppf(0.975, max(int(n) - 1, 1)) if n is not None and not pd.isna(n) else 1.96
        return (row[f"{metric}.mean"] - row[f"{metric}.ci_low"]) / t

    print(f"A: {a.path} ({len(a.cells)} cells)\nB: {b.path} ({len(b.cells)} cells)")
    rows = []
    if args.speedups:
        def speedups(res) -> dict:
            out = {}
            for _, group in res.cells.groupby("pair_id", sort=False):
                s = group[group["role"] == schema.ROLE_STRICT]
                r = group[group["role"] == schema.ROLE_RELAXED]
                if s.empty or r.empty or pd.isna(s.iloc[0][mean]) or pd.isna(r.iloc[0][mean]):
                    continue
                s, r = s.iloc[0], r.iloc[0]
                value, lo, hi = ratio_interval(r[mean], se(r, args.metric), s[mean], se(s, args.metric))
                out[tuple(str(s[k]) for k in setting)] = (s, value, lo, hi, se(s, args.metric) / s[mean])
            return out

        sa, sb = speedups(a), speedups(b)
        common = [k for k in sa if k in sb]
        print(f"metric: {args.metric}; speedup strict/relaxed [95% CI] in A and in B (threshold "
              f"{THRESHOLD:.0%}), and B's speedup over A's\n")
        for key in common:
            (row, va, la, ha, _), (_, vb, lb, hb, _) = sa[key], sb[key]
            change, lo, hi = ratio_interval(va, (ha - la) / 3.92, vb, (hb - lb) / 3.92)
            rows.append((abs(math.log(change)) if change > 0 else 0.0, label(row, variant=False),
                         f"A {va:.3f}x [{la:.3f}, {ha:.3f}] {_word(la, ha, THRESHOLD)}  "
                         f"B {vb:.3f}x [{lb:.3f}, {hb:.3f}] {_word(lb, hb, THRESHOLD)}  "
                         f"B/A {change:.3f} [{lo:.3f}, {hi:.3f}]", verdict(lo, hi, THRESHOLD)))
        only = len(sa) - len(common), len(sb) - len(common)
    else:
        def index(res):
            return {tuple(str(r[k]) for k in [*setting, "policy_variant"]): r
                    for _, r in res.cells.iterrows() if not pd.isna(r[mean])}

        ia, ib = index(a), index(b)
        common = [k for k in ia if k in ib]
        print(f"metric: {args.metric} (mean [95% CI]); B/A with its 95% interval (threshold {THRESHOLD:.0%})\n")
        for key in common:
            ra, rb = ia[key], ib[key]
            change, lo, hi = ratio_interval(ra[mean], se(ra, args.metric), rb[mean], se(rb, args.metric))
            high = f"{args.metric}.ci_high"
            rows.append((abs(math.log(change)) if change > 0 else 0.0, label(ra),
                         f"A {ra[mean]:10.1f} [{ra[f'{args.metric}.ci_low']:10.1f}, {ra[high]:10.1f}]  "
                         f"B {rb[mean]:10.1f} [{rb[f'{args.metric}.ci_low']:10.1f}, {rb[high]:10.1f}]  "
                         f"B/A {change:.3f} [{lo:.3f}, {hi:.3f}]", verdict(lo, hi, THRESHOLD)))
        only = len(ia) - len(common), len(ib) - len(common)
    if not common:
        print("no setting is in both runs")
        return EXIT_OK
    width = max(len(r[1]) for r in rows)
    counts = {"faster": 0, "slower": 0, "no practical change": 0, "not significant": 0}
    shown = 0
    for size, name, numbers, word in sorted(rows, key=lambda r: (-r[0], r[1])):
        counts[word] += 1
        if word in ("faster", "slower") or args.all:
            shown += 1
            text = {"faster": "B faster" if not args.speedups else "B's speedup lower",
                    "slower": "B slower" if not args.speedups else "B's speedup higher"}.get(word, word)
            print(f"{name:{width}s}  {numbers}  {text}")
    hidden = len(common) - shown
    print(f"\n{len(common)} settings in both runs: "
          + (f"B's speedup higher in {counts['slower']}, lower in {counts['faster']}" if args.speedups else
             f"B faster in {counts['faster']}, slower in {counts['slower']}")
          + f", no practical change in {counts['no practical change']}, not significant in {counts['not significant']}"
          + (" (not listed; --all lists them)" if hidden and not args.all else ""))
    if any(only):
        print(f"settings only in A: {only[0]}, only in B: {only[1]}")
    return EXIT_OK


def _word(lo: float, hi: float, threshold: float) -> str:
    """A speedup interval's verdict at the fitted costs (Monte Carlo only)."""
    if lo > 1 + threshold:
        return "(relaxed wins)"
    if hi < 1 - threshold:
        return "(relaxed loses)"
    if 1 - threshold <= lo and hi <= 1 + threshold:
        return "(no practical difference)"
    return "(unresolved)"


if __name__ == "__main__":
    sys.exit(main())
