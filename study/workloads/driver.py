"""Issues a workload's operations to an engine and keeps per-label books.

The driver owns the two random streams of a cell: ``work`` (which thread acts, which page,
read or write) and ``jitter`` (the engine's per-event draws).  Neither depends on the
policy, and every step draws its jitter whether or not any replicate acts, so the strict
and relaxed runs of one setting see the same numbers (common random numbers).
"""

from __future__ import annotations

import numpy as np

from study.engine.costs import draw_slots
from study.engine.ops import FLUSH_STRICT, OP_NOP
from study.workloads.result import CellResult


class Driver:
    """Runs operations on ``engine`` (VectorEngine or ScalarBatch) and records latencies."""

    def __init__(self, engine, jitter: np.random.Generator, max_samples: int = 2048,
                 label_counters: bool = False):
        self.engine = engine
        self.jitter = jitter
        self.R, self.C = engine.R, engine.C
        self.max_samples = max_samples
        self.lat_sum: dict[str, np.ndarray] = {}
        self.calls: dict[str, np.ndarray] = {}
        self.strict: dict[str, np.ndarray] = {}
        self.samples: dict[str, list[np.ndarray]] = {}
        self.n_samples: dict[str, int] = {}
        self.initiator_cycles = np.zeros(self.R, np.int64)
        self.other_cycles = np.zeros(self.R, np.int64)
        # per-label event counts (summed over replicates), to explain where a latency comes from
        self.label_counters: dict[str, dict[str, int]] | None = {} if label_counters else None
        self._last_delta: dict[str, np.ndarray] = {}
        # a workload's own per-replicate state across rounds (e.g. which pages it writes)
        self.state: dict[str, np.ndarray] = {}
        self._all = np.ones(self.R, bool)
        self._nobody = np.zeros(self.R, bool)
        self._idle = (np.zeros(self.R, np.int64), np.zeros(self.R, np.int8), np.zeros(self.R, bool))
        self._base_counters = {k: np.zeros(self.R, np.int64) for k in engine.counters}
        self._base_stolen = np.zeros(self.R, np.int64)

    def start_measuring(self):
        """Forget what a workload's setup cost: books start from here."""
        self.initiator_cycles[:] = 0
        self.other_cycles[:] = 0
        self._base_counters = {k: v.copy() for k, v in self.engine.counters.items()}
        self._base_stolen = self.engine.stolen.copy()

    def _const(self, value, dtype=np.int64):
        return np.full(self.R, value, dtype)

    def op(self, kind, cpu, lo=0, n=1, arg=0, active=None):
        """One engine step; scalars broadcast over replicates, ``active`` masks who acts.

        Returns (latency, flush type, uffd-wp fault pending); cycles are booked to the
        initiator (CPU slot 0) or to the other threads by the acting CPU.
        """
        R = self.R
        if active is not None and not active.any():
            # Nobody acts: skip the step.  Whether a step is skipped depends only on the
            # workload stream, so the jitter streams of strict and relaxed stay aligned.
            return self._idle
        kinds = self._const(kind, np.int8) if active is None else np.where(active, kind, OP_NOP).astype(np.int8)
        cpu = np.broadcast_to(np.asarray(cpu, np.intp), (R,))
        lo = np.broadcast_to(np.asarray(lo, np.intp), (R,))
        n = np.broadcast_to(np.asarray(n, np.int64), (R,))
        arg = np.broadcast_to(np.asarray(arg, np.int8), (R,))
        u = draw_slots(self.jitter, R, self.C)
        before = self._snapshot()
        lat, flush, pending = self.engine.step(kinds, cpu, lo, n, arg, u)
        if before is not None:
            self._last_delta = {k: v - before[k] for k, v in self.engine.counters.items()}
        if cpu[0] == 0 and cpu[-1] == 0 and (cpu == 0).all():
            self.initiator_cycles += lat
        else:
            on0 = cpu == 0
            self.initiator_cycles += np.where(on0, lat, 0)
            self.other_cycles += np.where(on0, 0, lat)
        return lat, flush, pending

    def chance(self, work: np.random.Generator, p: float):
        """Which replicates an event with probability ``p`` happens to (None: all of them).

        Certain and impossible events draw nothing: whether a draw happens depends only on
        the workload's knobs, so streams stay aligned across policies."""
        if p >= 1.0:
            return None
        if p <= 0.0:
            return self._nobody
        return work.random(self.R) < p

    def _snapshot(self):
        if self.label_counters is None:
            return None
        return {k: v.copy() for k, v in self.engine.counters.items()}

    def record(self, label, lat, flush=None, active=None):
        """Book one call of ``label`` per active replicate with latency ``lat``."""
        if self.label_counters is not None:
            books = self.label_counters.setdefault(label, {})
            for k, v in self._last_delta.items():
                books[k] = books.get(k, 0) + int(v.sum())
        if label not in self.lat_sum:
            self.lat_sum[label] = np.zeros(self.R, np.int64)
            self.calls[label] = np.zeros(self.R, np.int64)
            self.strict[label] = np.zeros(self.R, np.int64)
            self.samples[label] = []
            self.n_samples[label] = 0
        if active is None:
            act = self._all
            self.lat_sum[label] += lat
            self.calls[label] += 1
        else:
            act = active
            self.lat_sum[label] += np.where(act, lat, 0)
            self.calls[label] += act
        if flush is not None:
            self.strict[label] += act & (flush == FLUSH_STRICT)
        room = self.max_samples - self.n_samples[label]
        if room > 0:
            taken = lat[act][:room]
            self.samples[label].append(taken)
            self.n_samples[label] += taken.size

    def result(self, rounds: int, flush_labels=()) -> CellResult:
        """Per-replicate metrics and counters of the run so far."""
        e = self.engine
        res = CellResult(replicates=self.R, rounds=rounds)
        with np.errstate(invalid="ignore", divide="ignore"):
            for label in self.lat_sum:
                calls = self.calls[label]
                if not calls.any():
                    continue   # a label the run never exercised (e.g. remote access at rate 0)
                res.metrics[f"lat_{label}"] = np.where(calls > 0, self.lat_sum[label] / np.maximum(calls, 1), np.nan)
                if label in flush_labels:
                    res.metrics[f"strict_share_{label}"] = np.where(
                        calls > 0, self.strict[label] / np.maximum(calls, 1), np.nan)
                res.samples[label] = (np.concatenate(self.samples[label]) if self.samples[label]
                                      else np.zeros(0, np.int64))
        stolen = e.stolen - self._base_stolen
        res.metrics["initiator_cycles_per_round"] = self.initiator_cycles / rounds
        res.metrics["other_cycles_per_round"] = self.other_cycles / rounds
        res.metrics["stolen_cycles_per_round"] = stolen / rounds
        res.metrics["total_cycles_per_round"] = (self.initiator_cycles + self.other_cycles + stolen) / rounds
        res.counters = {k: v - self._base_counters[k] for k, v in e.counters.items()}
        return res
