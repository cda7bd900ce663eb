"""The lockstep mechanics of study.engine.vector: R replicates of one mm advanced as one.

Shapes.  Replicates are the last, contiguous axis of every array:

    [R]          one value per replicate (mm->tlb_gen, a step's CPU, a mask of who acts)
    [C, R]       per CPU slot (local generation, is_lazy, mm_cpumask, the tlb_gen line's holders)
    [P, R]       per page (PTE bits, VM_WRITE)
    [C, P, R]    per CPU and page (TLB entries)

so that a reduction over CPUs or pages is an elementwise pass over replicates and one CPU's
or one page's row is a view.  Cost sets (study.engine.costs.CostTables built from K
Machines) add a leading axis to cycles only: cycle books and cycle temporaries are [K, R],
per CPU [K, C, R]; base costs are [K, 1] and per-distance tables [K, 4], so that they
broadcast against [R] and [C, R].  Counts and state never carry it: no state transition reads
a cost.  Every sum or maximum over CPUs runs along axis -2 and so means the same with or
without cost sets; per_cpu() puts a per-replicate cycle value into that shape.  Rows of the
CPUs a shootdown can reach are [b - a, R] (shootdown_rows()).

Lockstep.  Workloads mostly issue one operation on one CPU and page for every replicate.
The helpers below notice that and index a row (a view: reads and in-place updates skip the
gather and scatter of fancy indexing) instead of one flat index per replicate; each returns
the same values either way.

Switches.  A behaviour's rule is a Python bool when every replicate agrees (the usual case:
no mask work at all) and a bool array over replicates where they differ; when() and unless()
apply one to a mask in either form.

Cycles.  Every charged event costs rint(base * F[u]) (study.engine.costs).  The engine keeps
whole cycles in float64 (exact far beyond any run's totals; it spares an integer conversion
per event, and step() converts once), so sums of charges do not depend on their order.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

# ---------------------------------------------------------------- rows and flat indices


def key(idx, ar):
    """Index of each replicate's CPU (or page) ``idx`` [R] in a per-CPU [C, R] (or per-page)
    array: a plain row ``(i,)`` when every replicate has the same one, else ``(idx, ar)``."""
    first = idx[0]
    if (idx == first).all():
        return (first,)
    return (idx, ar)


def get(a, idx):
    """``a``'s entries at ``idx``, copied: flat indices (an index array), or a row key (a tuple,
    when every replicate's entry is in one row)."""
    return a[idx].copy() if isinstance(idx, tuple) else a.take(idx)


def put(a, idx, values):
    """Store ``values`` at ``idx`` (as for get())."""
    if isinstance(idx, tuple):
        a[idx] = values
    else:
        a.put(idx, values)


def replicates(mask, ar):
    """The replicates in ``mask`` (distinct, ascending); ``ar`` itself (np.arange(R)) when that
    is every replicate, which the row-wise helpers take as "no gather needed"."""
    r = mask.nonzero()[0]
    return ar if r.size == ar.size else r


def add_rows(a, r, values, ar):
    """``a[..., r] += values`` (``a`` [R] or [K, R]; ``r`` from replicates())."""
    if r is ar:
        a += values
    else:
        a[..., r] += values


class Entries(NamedTuple):
    """Where the replicates ``r`` (from replicates()) find their CPU's and page's entries.

    ``cpu`` [n]: each one's CPU; ``at``, ``pte``, ``tlb``: keys for get()/put() into per-CPU
    [C, R], per-page [P, R] and per-CPU-and-page [C, P, R] arrays: row keys in lockstep (every
    replicate acts, on one CPU and page), else flat indices."""

    r: np.ndarray
    cpu: np.ndarray
    at: object
    pte: object
    tlb: object


def entries(r, cpu, page, ar, P):
    """The Entries of replicates ``r`` acting on ``cpu`` and ``page`` ([R] each)."""
    R = ar.size
    c0, p0 = cpu[0], page[0]
    if r is ar and (cpu == c0).all() and (page == p0).all():
        return Entries(r, cpu, (c0,), (p0,), (c0, p0))
    cr, pr = cpu.take(r), page.take(r)
    return Entries(r, cr, cr * R + r, pr * R + r, (cr * P + pr) * R + r)


def page_range(lo, n, mask, pg, ar):
    """The PTEs of a call on pages [lo, lo + n) by the replicates in ``mask``: (key, inr).

    A call on one page (the uffd monitor's unprotect of the faulting page) works on that
    page's entry per replicate: ``key`` is a row key or flat indices into [P, R] and ``inr``
    is ``mask`` [R].  Otherwise ``key`` is None (the whole page table) and ``inr`` the [P, R]
    mask of the range."""
    if n[0] == 1 and (n == 1).all():
        return ((lo[0],) if (lo == lo[0]).all() else lo * ar.size + ar), mask
    return None, (pg >= lo) & (pg < lo + n) & mask


def block(rows):
    """``rows`` (ascending CPU numbers) as a slice when contiguous: indexing with it is a view."""
    if rows.size and rows[-1] - rows[0] + 1 == rows.size:
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return rows


def count_rows(mask):
    """np.count_nonzero(mask, axis=0) of a [k, R] mask; one row is a cast (3x faster)."""
    if mask.shape[0] == 1:
        return mask[0].astype(np.intp)
    return np.count_nonzero(mask, axis=0)


def per_cpu(x):
    """A per-replicate cycle value ([R], or [K, 1] / [K, R] with cost sets) made to broadcast
    against per-CPU temporaries ([C, R], with cost sets [K, C, R])."""
    return x[:, None, :] if isinstance(x, np.ndarray) and x.ndim == 2 else x


def running_count(mask):
    """Per row of a [C, R] mask, how many rows up to and including it are set ([C, R] int64):
    a row loop, several times faster than np.cumsum along the short CPU axis."""
    out = np.empty(mask.shape, np.int64)
    acc = np.zeros(mask.shape[1], np.int64)
    for i in range(mask.shape[0]):
        acc += mask[i]
        out[i] = acc
    return out


def group_ranks(mask, group_slots, group_of):
    """Rows of a [C, R] ``mask`` in groups (``group_slots``: each group's rows, ascending;
    ``group_of``: each row's group): per row, the rank of its group among the groups holding a
    set row, ranked by their first set row; and per replicate, how many groups hold one."""
    C, R = mask.shape
    first = np.full((len(group_slots), R), C)
    for q, slots in enumerate(group_slots):
        mq = mask[slots]
        first[q] = np.where(mq.any(0), slots[np.argmax(mq, axis=0)], C)
    has = first < C
    rank_q = ((first[None, :, :] <= first[:, None, :]) & has[None, :, :]).sum(1)
    return rank_q[group_of], np.count_nonzero(has, axis=0)


# ---------------------------------------------------------------- distances


def distances(dist, cpu):
    """Distance class from each replicate's CPU ``cpu`` ([R], or [n] for some replicates) to
    every CPU: [C, R] (or [C, n]); or, when every replicate has the same CPU, its row of
    ``dist`` as [C, 1], which broadcasts and replaces a [C, R] gather (and the gathers of
    per-distance costs through it)."""
    first = cpu[0]
    if (cpu == first).all():
        return dist[first][:, None]
    return dist[:, cpu]


def by_distance(table, idx):
    """Per-distance cost ``table`` ([4], or [K, 4] with cost sets) at classes ``idx``: idx's
    shape, with the cost-set axis in front."""
    if table.ndim == 1:
        return np.take(table, idx)
    return table[:, idx]


def classes_by_cpu(dist):
    """Per CPU, the other CPUs by distance class, nearest class first: [(class, rows)], rows a
    slice where they are contiguous (a view) and an index array where not (for farthest())."""
    return [[(d, block(np.flatnonzero(row == d))) for d in np.unique(row[row > 0]).tolist()]
            for row in dist]


def farthest(mask, D, classes=None):
    """Per replicate, the largest distance class ``D`` (from distances()) of the rows set in a
    [C, R] ``mask``, the own row (class 0) aside; 0 where no other row is set.

    ``classes``: when one CPU acts for every replicate (D is [C, 1]), its entry of
    classes_by_cpu(): then class by class over [k, R] rows, nearest first so that the
    farthest set class is the one left, instead of a [C, R] where() and maximum."""
    if classes is not None:
        out = np.zeros(mask.shape[-1], np.int8)
        for d, rows in classes:
            out[mask[rows].any(0)] = d
        return out
    return np.where(mask & (D > 0), D, 0).max(0)


def nearest(mask, D):
    """Per replicate, the smallest distance class ``D`` of the rows set in ``mask`` (0: the
    own row is set; 99: none is)."""
    return np.where(mask, D, 99).min(0)


class Reach(NamedTuple):
    """The rows [a, b) of the CPUs a shootdown can reach, and what the walk reads of them.

    ``rows``: a slice (every per-CPU temporary of the walk is a view [b - a, R]); ``D``: their
    distance classes from the initiator, [b - a, R] or [b - a, 1]; ``rl``: the cost of one
    remote cache line at those distances; ``deliver``, ``handler``, ``preempt``, ``refill``:
    their per-CPU draw slots (study.engine.costs), [b - a, R]."""

    rows: slice
    D: np.ndarray
    rl: np.ndarray
    deliver: np.ndarray
    handler: np.ndarray
    preempt: np.ndarray
    refill: np.ndarray


def shootdown_rows(C, cpu, D, grouped):
    """Rows [a, b) of the CPUs a shootdown from ``cpu`` can reach (D: distances()).

    The initiator's own row never holds a target: when one CPU initiates for every replicate
    and it is the first or the last, the others are one block, and every temporary covers
    those rows only (half of them at two CPUs); sums and maxima over the rows are unchanged,
    the initiator's row adding zeros.  Sends in several groups (``grouped``: x2APIC clusters or
    PV windows, more than one of them) keep every row, since group_ranks() numbers the groups
    by CPU."""
    if D.shape[-1] != 1 or C < 2 or grouped:
        return 0, C
    p = int(cpu[0])
    return (1, C) if p == 0 else (0, C - 1) if p == C - 1 else (0, C)


def reach(C, cpu, D, grouped, remote_line, u, first_slot):
    """The Reach of a shootdown from ``cpu``; ``u``: the step's draws, whose per-CPU slots
    start at ``first_slot`` (deliver, then handler, preempt and refill slots, C each)."""
    a, b = shootdown_rows(C, cpu, D, grouped)
    D = D[a:b]
    x = first_slot + a
    return Reach(slice(a, b), D, by_distance(remote_line, D), u[x:x + b - a], u[x + C:x + C + b - a],
                 u[x + 2 * C:x + 2 * C + b - a], u[x + 3 * C:x + 3 * C + b - a])


# ---------------------------------------------------------------- switches


def when(on, mask, none):
    """``mask`` where switch ``on`` is True: per replicate when ``on`` is an array; ``none``
    (an all-False mask) where it is False."""
    if on is True:
        return mask
    if on is False:
        return none
    return mask & on


def unless(off, mask, none):
    """``mask`` where switch ``off`` is False (as for when())."""
    if off is False:
        return mask
    if off is True:
        return none
    return mask & ~off


class Switches:
    """A behaviour's rules for one run: bools, or bool arrays over replicates."""

    def __init__(self, **switches):
        self.__dict__.update(switches)


def switches(behaviour, R):
    """The behaviour's rules (a dataclass of booleans, read by field name) for ``R`` replicates:
    a bool per rule, or, for a sequence of R behaviours, an array where replicates disagree."""
    if not isinstance(behaviour, (list, tuple)):
        return Switches(**{f.name: bool(getattr(behaviour, f.name)) for f in dataclasses.fields(behaviour)})
    if len(behaviour) != R:
        raise ValueError(f"per-replicate policies: {len(behaviour)} given for {R} replicates")
    # a run's lanes repeat a few behaviour objects R times each: read each object's rules once
    first: dict[int, int] = {}
    which = np.fromiter((first.setdefault(id(b), len(first)) for b in behaviour), np.intp, len(behaviour))
    distinct = list({id(b): b for b in behaviour}.values())
    out = {}
    for name in (f.name for f in dataclasses.fields(distinct[0])):
        values = np.array([bool(getattr(b, name)) for b in distinct])[which]
        out[name] = bool(values[0]) if (values == values[0]).all() else values
    return Switches(**out)


# ---------------------------------------------------------------- cycles


def jittered(base, u, F):
    """Integer cycles (as float64) of events of ``base`` cycles with draws ``u`` and jitter
    table ``F``: rint(base * F[u]).  F.take(u) is about twice as fast as F[u] here."""
    return np.rint(base * F.take(u))


def charge(acc, mask, base, u, F):
    """``acc += jittered(base, u, F)`` where ``mask`` (``mask`` and ``u`` [R] or [n]; ``acc`` of
    that length, or [K, ...] with cost sets; ``base`` a scalar, [R], [K, 1] or [K, R]; ``mask``
    None: everywhere).

    The same cycles as ``np.where(mask, jittered(base, u, F), 0)``, but the table lookup and
    the arithmetic run only for the replicates the event happens to, and not at all when none
    has it: most events (faults, dirty-bit walks, refills, retries, SIGSEGV) happen to few
    replicates of a step, or to none.  count_nonzero() takes a tenth of nonzero()'s time, so
    it decides first whether there is anything to gather."""
    if mask is None:
        acc += jittered(base, u, F)
        return
    hit = np.count_nonzero(mask)
    if hit == 0:
        return
    if hit == mask.size:
        acc += jittered(base, u, F)
        return
    idx = mask.nonzero()[0]   # masks are [R] (or [n]): no ravel needed
    b = base.take(idx, axis=-1) if isinstance(base, np.ndarray) and base.ndim and base.shape[-1] != 1 else base
    acc[..., idx] += np.rint(b * F.take(u.take(idx)))
