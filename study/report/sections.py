"""The report's result sections, each a function from the analysis inputs to blocks.

Every sentence with a number is built from the analysis files, and says what it could not
show when the sweep lacked the cells for it; none asserts a result the data did not give.
"""

from __future__ import annotations

import pandas as pd

from study.analysis import schema
from study.analysis.paired import LOSES
from study.seed import SEED_KERNEL
from study.report import numbers as fmt
from study.report import tables
from study.report.doc import Block, Figure, Heading, Items, Note, Para, Table
from study.report.inputs import Inputs

def figure(inputs: Inputs, name: str) -> list[Block]:
    """The figure, or a note saying why the sweep could not draw it."""
    record = inputs.plot(name)
    if record is None:
        return []
    svg = inputs.svg(name)
    if svg is None:
        return [Note(f"Figure \u201c{record['title']}\u201d is not drawn: {record['note']}.")]
    return [Figure(name=name, svg=svg, caption=f"{record['title']}. {record['caption']}")]


def main_rows(inputs: Inputs, workload: str | None = None) -> pd.DataFrame:
    paired = inputs.table("paired")
    if paired.empty:
        return paired
    rows = paired[paired["metric"] == schema.MAIN_METRIC]
    if workload is not None:
        rows = rows[rows["workload"] == workload]
    return rows


def machines_text(inputs: Inputs) -> str:
    labels = [m["machine_label"] for m in inputs.summary.get("machines", [])]
    return ", ".join(f"`{x}`" for x in labels) if labels else "none"


# --- summary -------------------------------------------------------------------------

# --- 1 ---------------------------------------------------------------------------------

def question(inputs: Inputs) -> list[Block]:
    ov = inputs.summary.get("overview", {})
    man = inputs.manifest
    blocks: list[Block] = [
        Para("The 2022 RFC \u201cmm: relaxed TLB flushes and other optimizations\u201d lets x86 skip the TLB "
             "shootdown when a PTE change only adds permission (RO\u2192RW): the kernel advances `mm->tlb_gen`, "
             "flushes the local TLB and sends no IPI; a remote CPU keeps a stale, more restrictive entry, and if "
             "it faults on it, the spurious fault brings it up to date with one full flush. This report asks "
             "when that beats a named kernel's strict shootdown, by how much, and where it loses."),
        Para("The model is a Monte Carlo simulation of the flush machinery (`flush_tlb_mm_range`, "
             "`flush_tlb_func`, per-CPU and per-mm `tlb_gen`, `mm_cpumask`, lazy CPUs) in which every cost is "
             "the cost of one named event (IPI delivery, INVLPG, CR3 reload, dirty-bit page walk, fault entry), "
             "jittered per event. The workloads are described in their own section below. `strict` is a named "
             "kernel as it is: `rfc_base`, the RFC's own base and "
             "the seed's \u201cBefore\u201d (5.19-rc4 plus `MM_CP_TRY_CHANGE_WRITABLE` for dirty exclusive "
             "anonymous pages), or `mainline` (clean exclusive anonymous pages upgraded by mprotect, v6.2; "
             "uffd unprotect upgrading RW, v6.3). `relaxed` is that kernel with the RFC applied patch by patch "
             "(patches 1, 2, 3, 8, 9\u201311, 12); a patch the kernel already carries is a no-op there (on "
             "`mainline`: patch 3, and patch 2's mapping writable). Every table and figure names the kernel "
             "beside the machine. The negative control `unsafe` skips the flush on a dirty RW\u2192RO; "
             "ablations are relaxed with one patch switch off:"),
        Items(idea_items(inputs)),
    ]
    if ov:
        desc = f" ({man['description']})" if man.get("description") else ""
        reps = ov["replicates"]
        rounds = ov["rounds"]
        blocks.append(Para(
            f"This report covers sweep `{inputs.summary.get('sweep')}`{desc}: {ov['cells']} cells in "
            f"{ov['settings']} settings of the workloads {', '.join(f'`{w}`' for w in ov['workloads'])}, "
            f"{_span(reps)} replicates of {_span(rounds)} rounds per cell, on machine {machines_text(inputs)}."))
    uncal = [m["machine"] for m in inputs.summary.get("machines", []) if not m.get("machine_calibrated")]
    if uncal:
        blocks.append(Note(
            f"Uncalibrated machine preset: {', '.join(f'`{x}`' for x in uncal)}. Its event costs are priors, not "
            "fits to measurements (`python -m study calibrate`), so its absolute cycle counts are illustrations; "
            "it is marked \u201cuncalibrated preset\u201d wherever it is reported."))
    safety = inputs.metrics.get("violations_per_round_max", {})
    if safety:
        parts = [f"{role} {fmt.num(v, 3)}" for role, v in sorted(safety.items())]
        text = ("Safety: the most writes per round that completed through a stale entry onto a read-only or "
                f"clean PTE, over all cells of each policy: {', '.join(parts)}.")
        walks = sorted({(m["machine"], m["machine.dirty_walk"]) for m in inputs.summary.get("machines", [])
                        if m.get("machine.dirty_walk")})
        if walks:
            text += (" The result holds under the machines' dirty-bit-walk facts ("
                     + ", ".join(f"`{name}`: `{walk}`" for name, walk in walks)
                     + "): `cet` and `pre_cet` walks fault on a read-only PTE, which is what makes patch 12 safe; "
                       "on a walk that `completes` the write, patch 12 is unsafe (tests/test_safety.py).")
        if safety.get(schema.ROLE_UNSAFE, 0) and safety.get(schema.ROLE_UNSAFE) > 0:
            text += " The negative control shows that the checker does see violations when a policy allows them."
        if safety.get(schema.ROLE_RELAXED, 0):
            blocks.append(Note(text + " Relaxed must never allow one: this is a bug in the model or the policy."))
        else:
            blocks.append(Para(text))
    return blocks


def _span(pair) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}\u2013{pair[1]}"


# --- 2 ---------------------------------------------------------------------------------

def seed_section(inputs: Inputs) -> list[Block]:
    seed = inputs.table("seed_table")
    if seed.empty:
        return [Para("The sweep has none of the seed's cells (machine `haswell_2s`, `mprotect_toggle` on one "
                     "page, one or two threads on separate cores); `sweep=seed_table` runs exactly those.")]
    machine = ", ".join(sorted(seed["machine_label"].unique()))
    blocks: list[Block] = [
        Para("The seed's benchmark: one page, a loop of mprotect(PROT_READ), mprotect(PROT_READ|PROT_WRITE) "
             "and a write, with one or two threads in the mm (the second on another core, idle in the mm). "
             "Cycles per call, model mean with its 95% CI beside the seed's published number (Haswell, bare "
             "metal, 5.19-rc4+ before and after the patch set)."),
        tables.seed_table(seed, f"The seed's table reproduced; model on machine {machine}."),
    ]
    if len(seed) < 8:
        blocks.append(Note(f"Only {len(seed)} of the 8 seed cells are in this sweep."))
    red = inputs.metrics.get("seed_reduction_2t", {})
    if red:
        parts = [f"mprotect({'PROT_READ|PROT_WRITE' if k == 'mprotect_rw' else 'PROT_READ'}) "
                 f"{fmt.percent(r['model'], r['ci_low'], r['ci_high'])} (seed {fmt.percent(r['seed'])})"
                 for k, r in sorted(red.items(), reverse=True)]
        blocks.append(Para("Relaxed against strict at two threads, paired over common random numbers: "
                           + "; ".join(parts) + ". The RFC's explanation of the PROT_READ gain: under relaxed "
                           "the remote CPU lags two generations when the strict flush arrives, so its "
                           "`flush_tlb_func` does a cheaper full flush instead of INVLPG."))
    return blocks + figure(inputs, "seed_table") + identifiability_blocks(inputs)


def identifiability_blocks(inputs: Inputs) -> list[Block]:
    """What the seed's 8 cells pin about the calibrated costs, and which only priors set."""
    table = inputs.table("identifiability")
    info = inputs.summary.get("identifiability") or {}
    if table.empty or not info:
        return []
    values = ", ".join(f"{s:.3g}" for s in info["singular_values"])
    combos = "; ".join(f"`{c}`" for c in info["pinned_combinations"])
    only = [r.name for r in table.itertuples(index=False) if r.status == "prior only"]
    blocks: list[Block] = [Para(
        f"Eight cells cannot pin {len(table)} costs. The Jacobian of the seed cells' logs with respect to the "
        f"logs of the costs of `{info.get('machine', '')}` has singular values {values}; "
        f"{len(info['pinned_combinations'])} directions are pinned ({info['threshold_meaning']}): {combos}. "
        f"Set by their priors alone: {', '.join(f'`{p}`' for p in only) or 'none'}. The scaling, placement and "
        "crossover results lean on those priors wherever these costs matter.")]
    rows = [[f"`{r.name}`", fmt.num(r.pinned_share, 2), r.status, r.source] for r in table.itertuples(index=False)]
    blocks.append(Table(["cost", "pinned share", "status", "prior's source"], rows,
                        "What the seed pins: per cost, the share of it lying in the pinned directions "
                        "(1: determined in combination with others; 0: its prior alone sets it).",
                        ["l", "r", "l", "l"]))
    return blocks


# --- 3 ---------------------------------------------------------------------------------

def scaling(inputs: Inputs) -> list[Block]:
    blocks: list[Block] = [Para(
        "How the cost of the calls and of the whole loop grows with the threads of the mm and with how far "
        "apart they run (`smt`: hyper-thread siblings; `core`: other cores of one socket; `socket`: across "
        "sockets). A strict flush sends one IPI per other CPU in `mm_cpumask` and waits for every "
        "acknowledgement; a relaxed one sends none.")]
    blocks += figure(inputs, "latency_threads")
    blocks += figure(inputs, "speedup_threads")
    drawn = inputs.table("plot:speedup_threads")
    if not drawn.empty:
        data = main_rows(inputs)
        data = data[data["pair_id"].isin(set(drawn["pair_id"]))]
        blocks.append(tables.comparisons(data, "Speedup strict/relaxed of total cycles per round along threads "
                                         "and placement (the slice drawn above).", with_workload=True,
                                         limit=48))
    speed, where = inputs.metrics.get("speedup", {}), inputs.summary.get("where", {})
    items = [f"`{where[k]['setting']}`, {where[k]['machine']}: {fmt.ratio(v['value'], v['ci_low'], v['ci_high'])} "
             f"({where[k]['verdict']})"
             for k, v in sorted(speed.items()) if k.endswith("_most_threads")]
    if items:
        blocks += [Para("At the most threads of each workload's scaling slice:"), Items(items)]
    blocks.append(Heading("Where the cycles go", level=2))
    blocks += figure(inputs, "cycle_breakdown")
    blocks.append(Heading("Latency distributions", level=2))
    blocks += figure(inputs, "latency_ecdf")
    return blocks


# --- 4 ---------------------------------------------------------------------------------

def idea_items(inputs: Inputs) -> list[str]:
    """One line per RFC idea of the sweep (its manifest), with the kernels that already carry it."""
    meaning = inputs.manifest.get("meaning", {})
    kernels = meaning.get("kernels", {})
    items = []
    for idea in meaning.get("ideas", []):
        switch = meaning.get("switches", {}).get(idea, {})
        carried = [k for k, info in sorted(kernels.items()) if idea in info.get("carries", [])]
        note = f"; already carried by {', '.join(f'`{k}`' for k in carried)} (a no-op there)" if carried else ""
        items.append(f"`{idea}` ({switch.get('where', '?')}, `{switch.get('function', '')}`): "
                     f"{switch.get('doc', '')}{note}")
    return items


def workloads(inputs: Inputs) -> list[Block]:
    """One subsection per workload of the sweep, in the words its class gives (the manifest)."""
    described = inputs.manifest.get("meaning", {}).get("workloads", {})
    if not described:
        return [Para("The sweep ran no workload.")]
    blocks: list[Block] = []
    for name, desc in sorted(described.items()):
        blocks.append(Heading(f"{desc.get('title') or name} (`{name}`)", level=2))
        blocks.append(Para(desc.get("about", "")))
        if desc.get("predicted_strict_share"):
            blocks += _prediction(inputs, name)
        blocks += figure(inputs, f"{name}_panel")
        rows = main_rows(inputs, name)
        if not rows.empty:
            blocks.append(tables.comparisons(rows, f"{name}: speedup strict/relaxed of total cycles per round, "
                                             "every setting of the sweep.", limit=30))
    return blocks


def _prediction(inputs: Inputs, workload: str) -> list[Block]:
    """The workload's observed strict share against 1-(1-d)^k, when the sweep drew it."""
    data = inputs.table("plot:dirty_ratio")
    if data.empty or "workload" not in data or workload not in set(data["workload"]):
        return []
    blocks = figure(inputs, "dirty_ratio")
    obs = data[data["kind"] == "observed"]
    gap = (obs["share"] - obs["predicted"]).abs()
    inside = ((obs["ci_low"] <= obs["predicted"] + 1e-12) & (obs["predicted"] - 1e-12 <= obs["ci_high"])).sum()
    text = (f"Over {len(obs)} cells the observed share of strict write-protects is at most "
            f"{fmt.num(float(gap.max()), 3)} from 1\u2212(1\u2212d)^k, and the prediction lies inside the "
            f"cell's 95% CI in {int(inside)} of them.")
    zero = obs[obs["dirty_ratio"] == 0]
    if not zero.empty:
        text += (f" At d = 0 relaxed took the strict path in at most {fmt.percent(float(zero['share'].max()))} "
                 "of the write-protects: the seed's prediction holds in the model.")
    return blocks + [Para(text)]


# --- 6 ---------------------------------------------------------------------------------

def loses(inputs: Inputs) -> list[Block]:
    blocks: list[Block] = [Para(
        "Relaxed leaves remote CPUs behind mm->tlb_gen. That costs them twice. The next strict "
        "shootdown finds them two generations behind, and `flush_tlb_func` does a full flush instead of "
        "INVLPG (the seed's -6% on PROT_READ); and a remote write into the range after a relaxed "
        "RO\u2192RW takes a spurious fault, which `flush_tlb_fix_spurious_fault` answers with a full flush. "
        "Each full flush throws away the hot set of the thread on that CPU, which it then refills by page "
        "walks, whether or not it ever touches the range that changed: a busy thread that keeps N entries hot "
        "pays N walks per full flush of its CPU (at most the machine's STLB entries), a thread spinning on "
        "registers, like the seed's second thread, pays none. The larger the hot sets and the more the other "
        "threads touch the range, the more relaxed costs. The boundary is where the speedup of total cycles "
        "per round reaches 1. Working set 0 is the assumption that a full flush is free, shown as the "
        "contrast: every workload's default hot sets are non-zero, with their sources in its `conf/workload` "
        "file (the L1 data TLB's 64 entries for the mprotect loop and the allocator, a full STLB for uffd-wp "
        "writers), and the next section says, per setting, at what hot set each verdict flips.")]
    blocks += figure(inputs, "crossover")
    boundary = inputs.table("crossover")
    if not boundary.empty:
        rows = []
        for r in boundary.itertuples(index=False):
            at = (f"{tables.knob_title(r.y)} = {fmt.plain(_as_number(r.y_value))}" if isinstance(r.y, str)
                  else "\u2014")
            coarse = getattr(r, "interpolated", True) in (False, "False")
            if r.status != "crosses":
                value = r.status
            elif coarse:
                value = f"between {fmt.plain(r.below)} and {fmt.plain(r.above)}"
            else:
                value = f"{fmt.num(r.boundary, 3)} {fmt.interval(r.boundary_low, r.boundary_high, 3)}"
            kernel = schema.label_kernel(r.machine_label)
            rows.append([r.workload, kernel, tables.knob_title(r.x), at,
                         f"{fmt.plain(r.x_min)}\u2013{fmt.plain(r.x_max)}", value])
        blocks.append(Table(["workload", "kernel", "along", "at", "range", "relaxed stops winning at [95% CI]"], rows,
                            "Crossover boundaries: the smallest value of the knob at which strict/relaxed reaches 1 "
                            "(log-linear interpolation between grid points at most 2\u00d7 apart, else the two "
                            "points; CI from the paired bootstrap draws; \u00b1\u221e: the draw did not cross "
                            "inside the grid).",
                            ["l", "l", "l", "l", "r", "l"]))
    else:
        blocks.append(Para("The sweep varies no crossover knob (remote access, remote writes, threads), so no "
                           "boundary can be located."))
    main = main_rows(inputs)
    if not main.empty:
        losing = main[main["verdict"] == LOSES].sort_values("speedup", kind="stable")
        if losing.empty:
            slowest = main.loc[main["speedup"].idxmin()]
            blocks.append(Para(
                f"Relaxed loses (beyond the practical threshold, across the ensemble where it ran) in none of the "
                f"{len(main)} settings of this sweep; the lowest speedup is "
                f"{fmt.ratio(slowest['speedup'], slowest['speedup_low'], slowest['speedup_high'])} ({slowest['workload']})."))
        else:
            blocks.append(Para(f"Relaxed loses in {len(losing)} of {len(main)} settings (its whole range below the "
                               "practical threshold: see the Verdict), slowest first; the PDF shows the first rows, "
                               "paired.csv holds every comparison:"))
            blocks.append(tables.comparisons(losing, "Settings where relaxed loses on total cycles per round.",
                                             with_workload=True, limit=15, sort=False))
            blocks += why_they_lose(inputs, losing.head(15))
            blocks += where_cycles_go(inputs, losing)
    return blocks


def _as_number(value):
    """A knob value read back from a CSV column that mixes text and numbers."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def why_they_lose(inputs: Inputs, losing: pd.DataFrame) -> list[Block]:
    """Each losing setting's mechanism, from the engine's counts (why.csv: study.analysis.why)."""
    why = inputs.table("why")
    if why.empty:
        return []
    text = dict(zip(why["pair_id"], why["text"]))
    items = [f"{r['workload']} on `{r.get('kernel', '')}`, {tables.setting_knobs(pd.Series(r), losing)}: "
             f"{text[r['pair_id']]}." for r in losing.to_dict("records") if r["pair_id"] in text]
    if not items:
        return []
    return [Para("Why each of these loses, from the engine's own counts (the part of the cycles that grew most, "
                 "the event behind it per round, strict \u2192 relaxed, and the RFC patch whose switching-off "
                 "would give most of it back):"), Items(items)]


def where_cycles_go(inputs: Inputs, losing: pd.DataFrame, limit: int = 8) -> list[Block]:
    """For the losing settings: the cycles of one loop iteration by part, strict beside relaxed."""
    summary = inputs.table("cells_summary")
    if summary.empty:
        return []
    parts = {"initiator_cycles_per_round": "caller", "other_cycles_per_round": "other threads",
             "stolen_cycles_per_round": "stolen by handlers"}
    rows = []
    for r in losing.head(limit).to_dict("records"):
        cells = summary[(summary["pair_id"] == r["pair_id"]) & summary["metric"].isin(list(parts))]
        means = {(c["role"], c["metric"]): c["mean"] for c in cells.to_dict("records")}
        row = [r["workload"], str(r.get("kernel", "")), tables.setting_knobs(pd.Series(r), losing)]
        for metric in parts:
            s_, x_ = means.get((schema.ROLE_STRICT, metric)), means.get((schema.ROLE_RELAXED, metric))
            row.append(f"{fmt.num(s_)} \u2192 {fmt.num(x_)}")
        rows.append(row)
    if not rows:
        return []
    return [Table(["workload", "kernel", "setting", *parts.values()], rows,
                  "Where the cycles go in the settings where relaxed loses: cycles per loop iteration, strict \u2192 "
                  "relaxed, on the caller, on the other threads (spurious faults, working-set refills after a full "
                  "flush) and stolen by remote flush_tlb_func handlers; every other knob at the setting's value. "
                  f"First {min(limit, len(losing))} of {len(losing)} losing settings; the rest are in cells_summary.csv.",
                  ["l", "l", "l", "r", "r", "r"])]


# --- 7 ---------------------------------------------------------------------------------

def attribution(inputs: Inputs) -> list[Block]:
    blocks: list[Block] = [Para(
        "Each RFC patch's share of the gain: in one setting, with strict S (the kernel as it is), full relaxed R "
        "(the kernel with every patch) and relaxed without patch i, A_i, all on common random numbers, the share "
        "is (A_i \u2212 R) / (S \u2212 R): how much of the gain is given back when the patch is switched off. "
        "Each patch's share is pooled per machine, kernel and workload over the settings where relaxed wins AND "
        "the patch can act there (contributions and gains summed first): on common random numbers a switch that "
        "changes nothing (merged in the kernel, per `study.policies.acts_on`, or never reached by the workload) "
        "leaves every replicate bit-identical, so a 0% share is never reported for a patch the grid cannot "
        "exercise. Shares are over different sets of settings and need not add up to 1; the patches also "
        "interact (patch 8's fix-up only matters once patches 9\u201311 leave stale entries).")]
    blocks += figure(inputs, "attribution")
    switches = inputs.manifest.get("meaning", {}).get("switches", {})

    def label(idea: str) -> str:
        return f"{idea} ({switches[idea]['where']})" if idea in switches else idea

    pooled = inputs.table("attribution")
    if pooled.empty:
        blocks.append(Para("The sweep has no ablations of relaxed (cells with one RFC switch off) in settings "
                           "where relaxed wins, so the gain cannot be attributed."))
        return blocks
    if "acts" in pooled:
        idle = pooled[~pooled["acts"].astype(bool)]
        pooled = pooled[pooled["acts"].astype(bool)]
        if not idle.empty:
            blocks.append(Para("Patches that cannot act in any ablated setting where relaxed wins (switching them off "
                               "changes nothing: merged in the kernel, or not reached by the workload), so they get "
                               "no share: " + "; ".join(
                                   f"{w}: " + ", ".join(f"`{label(i)}`" for i in g["idea"])
                                   for w, g in idle.groupby("workload", sort=True)) + "."))
    rows = []
    for r in pooled.itertuples(index=False):
        contrib = ("\u2014" if pd.isna(r.contribution)
                   else fmt.cycles(r.contribution, r.contribution_low, r.contribution_high))
        kernel = schema.label_kernel(r.machine_label)
        rows.append([r.workload, kernel, label(r.idea), fmt.percent(r.share, r.share_low, r.share_high, digits=1),
                     contrib, fmt.cycles(r.gain, r.gain_low, r.gain_high), str(int(r.settings))])
    machine = ", ".join(sorted(pooled["machine_label"].unique()))
    blocks.append(Table(["workload", "kernel", "RFC patch (switch)", "share of gain [95% CI]",
                         "given back, cycles/round [95% CI]", "gain S\u2212R, cycles/round [95% CI]",
                         "settings where it acts"], rows,
                        f"Per-patch attribution pooled per workload over the settings where relaxed wins and the "
                        f"patch acts; machine {machine}; relaxed = that kernel with every RFC patch, ablations with "
                        f"one patch switch off.",
                        ["l", "l", "l", "r", "r", "r", "r"]))
    return blocks

