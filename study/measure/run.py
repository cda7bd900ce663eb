"""Run measurement cells on this host with the compiled benchmark, into CellResults.

A measured cell is the engine's WorkloadSpec plus where its threads run on the host.
Each trial of the benchmark is one replicate: ``lat_<label>`` is the trial's mean cycles
per call (the empty timed region's median cost subtracted; calls longer than the outlier
bound, i.e. interrupted by the scheduler, are counted in ``outlier_share`` and left out of
the mean), and per-call samples (outliers included) are kept for medians and p99.  The ``TLB`` row of /proc/interrupts (flush_tlb_func() run for a
remote CPU's request: shootdowns received) and the ``CAL`` row (function-call IPIs
received) are summed over CPUs per trial; per flushing call they are the metrics
``tlb_per_call`` and ``cal_per_call``.  Those rows count every process on the host, so a
busy machine adds other processes' shootdowns: the manifest records the load average.

With a tracefs session (study.measure.trace) each trial also carries the kernel's own
account of its timed rounds, and ``trace_<role>_<kind>`` is the count of each event kind on
thread 0's CPU (``initiator``) or the other threads' CPUs (``others``, summed) per flushing
call; a trial that lost events has them NaN.  The refill and lazy_wake cells add what the
other thread's passes over its own buffer lose after a flushing call (``ws_pass`` minus
``ws_pass_quiet``) and, for lazy_wake, what its wake-up does (``wake`` minus ``wake_quiet``).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from study.measure import trace as tracing
from study.workloads.result import CellResult
from study.workloads.spec import WorkloadSpec

# the calls that may flush (mprotect, madvise, UFFDIO_WRITEPROTECT); per-call IRQ rates divide by these
FLUSH_LABELS = ("mprotect_ro", "mprotect_rw", "madv_free", "uffd_protect", "uffd_unprotect")


@dataclass(frozen=True)
class MeasureCell:
    """One measured cell: the workload (the engine's spec) and its host CPUs."""

    name: str
    workload: WorkloadSpec
    others: str                      # busy | idle (idle threads sleep: their CPUs are lazy)
    cpus: tuple[int, ...]            # host CPU of each thread, thread 0 first
    bench: str = ""                  # the benchmark's loop (study/measure/grid.py HOST); "": the workload's
    knobs: tuple[tuple[str, int], ...] = ()   # the loop's own settings (ws=, vma=)
    modelled: bool = True            # the workload models the loop (calibrate fits and predicts it)
    rounds: int | None = None        # the sub-grid's rounds, when it sets them

    @property
    def loop(self) -> str:
        return self.bench or self.workload.name

    def bench_args(self, trials: int, rounds: int, warmup: int, max_samples: int, seed: int,
                   nice: int = 0, outlier: int = 0, gap: int = 0) -> list[str]:
        w = self.workload
        args = [f"nice={nice}"] + ([f"outlier={outlier}"] if outlier > 0 else []) + (
            [f"gap={gap}"] if gap > 0 else []) + [f"workload={self.loop}", f"pages={w.pages}", f"cpus={','.join(map(str, self.cpus))}",
                f"others={self.others}", f"dirty={w.dirty_ratio}", f"rounds={rounds}", f"warmup={warmup}",
                f"trials={trials}", f"max_samples={max_samples}", f"seed={seed}"]
        if w.name == "uffd_wp":
            args += [f"write_rate={w.write_rate}", f"writes_per_round={w.writes_per_round}"]
        args += [f"{k}={v}" for k, v in self.knobs]
        return args


@dataclass
class Measured:
    cell: MeasureCell
    result: CellResult | None
    skipped: str = ""                # why the workload could not run here
    raw: list[dict] = field(default_factory=list)


def unavailable(cell: MeasureCell, probed: dict) -> str | None:
    """Why this host cannot run ``cell`` (the benchmark's probe), or None: uffd_wp needs
    userfaultfd write-protect (UFFD_FEATURE_PAGEFAULT_FLAG_WP)."""
    if cell.workload.name == "uffd_wp" and not probed["uffd_wp"]:
        return probed["uffd_reason"]
    return None


def userfaultfd(probed: dict) -> dict:
    """What the probe found of userfaultfd write-protect, for the measurement's manifest."""
    return {"available": bool(probed["uffd_wp"]), "reason": probed["uffd_reason"]}


def probe(binary: Path) -> dict:
    """TSC frequency, the timer's own cost and whether userfaultfd write-protect works."""
    res = subprocess.run([str(binary), "probe"], capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise RuntimeError(f"benchmark probe failed: {res.stderr.strip()}")
    return json.loads(res.stdout.strip().splitlines()[-1])


TIMEOUT_S = 600


def run_cell(binary: Path, cell: MeasureCell, *, trials: int, rounds: int, warmup: int, max_samples: int,
             seed: int, timer_overhead: float, nice: int = 0, outlier: int = 0, gap: int = 0,
             spin_rate: float = 0.0, trace: "tracing.Session | None" = None) -> Measured:
    """Run one cell; with ``trace`` (a tracefs session) each trial carries its events."""
    rounds = cell.rounds or rounds
    args = [str(binary), "run"] + cell.bench_args(trials, rounds, warmup, max_samples, seed, nice, outlier, gap)
    if trace is None:
        res = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT_S)
        if res.returncode != 0:
            raise RuntimeError(f"benchmark failed on cell {cell.name}: {res.stderr.strip()}")
        lines = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
    else:
        lines = _run_traced(args, cell, trace)
    if lines and "skip" in lines[0]:
        return Measured(cell, None, skipped=lines[0]["skip"])
    return Measured(cell, to_result(lines, rounds, timer_overhead, spin_rate), raw=lines)


def _run_traced(args: list[str], cell: MeasureCell, trace: "tracing.Session") -> list[dict]:
    """The benchmark writing into ``trace``'s instance: after each trial's line it waits while
    the trial's events are read and the buffer cleared (outside its timed rounds)."""
    trace.start(cell.cpus)
    lines, taken = [], []
    with tempfile.TemporaryFile(mode="w+") as err, subprocess.Popen(
            args + [f"trace={trace.dir}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
            text=True) as proc:
        watchdog = threading.Timer(TIMEOUT_S, proc.kill)
        watchdog.start()
        try:
            for raw in proc.stdout:
                if not raw.strip():
                    continue
                line = json.loads(raw)
                lines.append(line)
                if "skip" in line:
                    break
                taken.append(trace.take(cell.cpus))
                proc.stdin.write("\n")
                proc.stdin.flush()
            proc.stdin.close()
            code = proc.wait()
        finally:
            watchdog.cancel()
        if code != 0:
            err.seek(0)
            raise RuntimeError(f"benchmark failed on cell {cell.name}: {err.read().strip() or f'exit {code}'}")
    # counted once the benchmark is gone: its busy threads spin between trials
    for line, text in zip((t for t in lines if "skip" not in t), taken):
        line["trace"] = tracing.account(text, int(line["trial"]), cell.cpus)
    return lines


def to_result(trials: list[dict], rounds: int, timer_overhead: float, spin_rate: float = 0.0) -> CellResult:
    """Per-trial books of the benchmark as a CellResult (one replicate per trial)."""
    R = len(trials)
    labels = sorted({label for t in trials for label in t["labels"]})
    res = CellResult(replicates=R, rounds=rounds)
    total = np.zeros(R)
    flush_calls = np.zeros(R)
    outliers = np.zeros(R)
    calls = np.zeros(R)
    for label in labels:
        lat = np.full(R, np.nan)
        samples = []
        for r, t in enumerate(trials):
            book = t["labels"].get(label)
            if not book:
                continue
            outliers[r] += book.get("out", 0)
            calls[r] += book["n"] + book.get("out", 0)
            if label in FLUSH_LABELS:
                flush_calls[r] += book["n"] + book.get("out", 0)
            if not book["n"]:
                continue
            lat[r] = book["sum"] / book["n"] - timer_overhead
            total[r] += book["sum"] - timer_overhead * book["n"]
            samples.append(np.asarray(book["samples"], np.float64) - timer_overhead)
        res.metrics[f"lat_{label}"] = lat
        res.samples[label] = np.rint(np.concatenate(samples)).astype(np.int64) if samples else np.zeros(0, np.int64)
    tlb = np.array([sum(t["tlb"]) for t in trials], np.float64)
    cal = np.array([sum(t["cal"]) for t in trials], np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        res.metrics["tlb_per_call"] = np.where(flush_calls > 0, tlb / np.maximum(flush_calls, 1), np.nan)
        res.metrics["cal_per_call"] = np.where(flush_calls > 0, cal / np.maximum(flush_calls, 1), np.nan)
    # calls left out of the means: longer than the outlier bound (the scheduler ran another
    # task on the CPU in the middle of the call); their samples are kept
    res.metrics["outlier_share"] = outliers / np.maximum(calls, 1)
    # iterations of the busy threads' loop per 1000 cycles of the trial: 0 means the other
    # threads never ran (their CPU was taken by another process), so no IPI could be due
    res.metrics["other_spins_per_kcycle"] = np.array([1000.0 * t.get("spins", 0) / max(t.get("cycles", 1), 1)
                                                      for t in trials])
    # The other threads' on-CPU share per trial: the workload knob on_cpu_share that
    # `calibrate --from` gives the engine.  Measured at the flushes: just before each
    # flushing call thread 0 looks at each other thread's heartbeat (its loop's last TSC
    # read); one older than off_cpu_gap_us means that thread is off its CPU now, so its CPU
    # has another mm loaded and should_flush_tlb() will skip it.  on_cpu_share = the share
    # of those looks that found it on its CPU.  NaN where no other thread watched (1 thread,
    # idle sleepers).  Two cross-checks, not used by the model: the time average (1 - the
    # TSC gaps longer than off_cpu_gap_us in their loops / their cycles), which differs
    # when the scheduler takes the other CPU more often while thread 0 runs, and the spin
    # rate (loop iterations per cycle over the probe's rate for the loop alone, which also
    # counts interrupt time as off).
    res.metrics["other_on_cpu_share"] = np.array([
        t["on_hits"] / t["on_samples"] if t.get("on_samples") else np.nan for t in trials])
    res.metrics["other_on_cpu_time_share"] = np.array([
        min(max(1.0 - t.get("off_cycles", 0) / (t["watchers"] * max(t["cycles"], 1)), 0.0), 1.0)
        if t.get("watchers") else np.nan for t in trials])
    res.metrics["other_on_cpu_share_spins"] = np.array([
        min(t.get("spins", 0) / (t["spinners"] * max(t["cycles"], 1) * spin_rate), 1.0)
        if t.get("spinners") and spin_rate > 0 else np.nan for t in trials])
    # cycles of the timed calls per round (the initiator's, and the writers' for uffd_wp)
    res.metrics[CellResult.MAIN_METRIC] = total / rounds
    accounts = [t.get("trace") for t in trials]
    if any(a is not None for a in accounts):
        trace_metrics(res, accounts, flush_calls)
    extra_metrics(res, trials, accounts)
    res.counters = {"tlb_received": tlb.astype(np.int64), "cal_received": cal.astype(np.int64)}
    return res


def trace_metrics(res: CellResult, accounts: list[dict | None], flush_calls: np.ndarray) -> None:
    """``trace_<role>_<kind>``: events per flushing call; NaN in a trial that lost events (or a
    marker), for a role without CPUs, or without flushing calls.  ``trace_lost_events``: the
    events each trial lost."""
    R = len(accounts)
    ok = [tracing.usable_account(a) for a in accounts]
    for role in tracing.ROLES:
        for kind in tracing.KINDS:
            values = np.full(R, np.nan)
            for r, acc in enumerate(accounts):
                if ok[r] and acc["roles"][role] and flush_calls[r] > 0:
                    values[r] = acc["counts"][role][kind] / flush_calls[r]
            res.metrics[tracing.metric_name(role, kind)] = values
    res.metrics["trace_lost_events"] = np.array([float(a["lost"]) if a is not None else np.nan for a in accounts])


def extra_metrics(res: CellResult, trials: list[dict], accounts: list[dict | None]) -> None:
    """The other thread's loss after a flushing call (refill, lazy_wake), per trial.

    ``ws_pass_extra_cycles``: its mean pass over its buffer right after a call minus its mean
    quiet pass (the overhead cancels); ``ws_lost_cycles_per_flush``: that times the passes
    after a call, over the flushes its CPUs took in the trial (the trace's remote partial and
    full flushes and full switch flushes; NaN without a usable trace or without flushes);
    ``wake_extra_cycles``: its mean wake-up after a call minus its mean quiet wake-up."""
    m = res.metrics
    if "lat_ws_pass" in m and "lat_ws_pass_quiet" in m:
        extra = m["lat_ws_pass"] - m["lat_ws_pass_quiet"]
        m["ws_pass_extra_cycles"] = extra
        per_flush = np.full(len(trials), np.nan)
        for r, (t, acc) in enumerate(zip(trials, accounts)):
            book = t["labels"].get("ws_pass")
            if not tracing.usable_account(acc) or not book or not acc["roles"]["others"]:
                continue
            took = sum(acc["counts"]["others"][k] for k in ("remote_partial", "remote_full", "switch_full"))
            if took > 0:
                per_flush[r] = extra[r] * (book["n"] + book.get("out", 0)) / took
        m["ws_lost_cycles_per_flush"] = per_flush
    if "lat_wake" in m and "lat_wake_quiet" in m:
        m["wake_extra_cycles"] = m["lat_wake"] - m["lat_wake_quiet"]
