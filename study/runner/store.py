"""The sweep's files: one cached result per finished cell, and atomic writes of everything.

A cell's file ``cells/<cell_id>.npz`` is written to a temporary name and renamed into place,
so a killed sweep leaves either a whole result or none.  The file carries the code
fingerprint it was computed with; a result from other engine code is never reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

import study
from study.results.files import atomic_write
from study.results import metrics
from study.workloads import LABELS
from study.workloads.result import COUNTERS, CellResult


# The modules whose code decides a cell's numbers.
CODE_PACKAGES = ("engine", "workloads", "policies")
CODE_MODULES = ("runner/replicate.py", "config/cell.py")


def code_fingerprint(simulate: Callable | None = None) -> str:
    """sha256 over the engine's source files and the simulate function's name."""
    root = Path(study.__file__).resolve().parent
    h = hashlib.sha256()
    files = [p for pkg in CODE_PACKAGES for p in sorted((root / pkg).rglob("*.py"))]
    files += [root / m for m in CODE_MODULES]
    for path in files:
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    if simulate is not None:
        h.update(f"{simulate.__module__}.{simulate.__qualname__}".encode())
    return h.hexdigest()[:16]


class NpzStore:
    """One .npz per cell under ``directory``, written atomically and tagged: a file is read back
    only if it names the cell, carries this store's ``tag`` (the code fingerprint, or a run's
    key) and its arrays match the shapes and checksum it records.  Anything else -- absent,
    torn, altered, foreign or from other code -- reads as None: recomputed, never trusted,
    never fatal."""

    def __init__(self, directory: Path, tag: str):
        self.directory = Path(directory)
        self.tag = tag

    def path(self, cell_id: str) -> Path:
        return self.directory / f"{cell_id}.npz"

    def write_arrays(self, cell_id: str, arrays: dict[str, np.ndarray], **meta) -> None:
        arrays = {k: np.asarray(v) for k, v in arrays.items()}
        head = {"cell_id": cell_id, "code": self.tag, **meta,
                "shapes": {k: list(v.shape) for k, v in sorted(arrays.items())},
                "sha256": arrays_digest(arrays)}
        payload = {**arrays, "meta": np.array(json.dumps(head, sort_keys=True))}

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, **payload)

        path = self.path(cell_id)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)  # something foreign sits where the cell goes: the cell wins
        atomic_write(path, write)

    def read_arrays(self, cell_id: str) -> tuple[dict, dict[str, np.ndarray]] | None:
        """(metadata, arrays) of the cell's file, or None unless it is this store's and intact."""
        path = self.path(cell_id)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                if not isinstance(meta, dict) or meta.get("cell_id") != cell_id or meta.get("code") != self.tag:
                    return None
                arrays = {key: data[key] for key in data.files if key != "meta"}
            shapes = meta["shapes"]
            if sorted(arrays) != sorted(shapes) or meta["sha256"] != arrays_digest(arrays):
                return None
            if any(list(array.shape) != shapes[key] or array.dtype.kind not in "biuf"   # numbers only
                   for key, array in arrays.items()):
                return None
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, AttributeError):
            return None  # a torn or foreign file is recomputed, never trusted
        return meta, arrays


class CellStore(NpzStore):
    """Finished cells of one sweep directory, keyed by cell_id, tagged with the code fingerprint."""

    def __init__(self, directory: Path, fingerprint: str):
        super().__init__(directory, fingerprint)
        self.fingerprint = fingerprint

    def save(self, cell_id: str, result: CellResult) -> None:
        arrays = {f"metric.{k}": v for k, v in result.metrics.items()}
        arrays |= {f"counter.{k}": v for k, v in result.counters.items()}
        arrays |= {f"sample.{k}": v for k, v in result.samples.items()}
        self.write_arrays(cell_id, arrays, replicates=int(result.replicates), rounds=int(result.rounds))

    def load(self, cell_id: str, replicates: tuple[int, int] | None = None) -> CellResult | None:
        """The cached result, or None when absent, unreadable, altered or from other code.

        Beyond NpzStore's checks: one value per replicate for metrics and counters, known
        names only, and, when ``replicates`` = (low, high) is given, that many replicates.
        """
        found = self.read_arrays(cell_id)
        if found is None:
            return None
        meta, arrays = found
        try:
            n, rounds = meta["replicates"], meta["rounds"]
        except KeyError:
            return None
        if not (type(n) is int and type(rounds) is int and n >= 1 and rounds >= 1):
            return None
        if replicates is not None and not replicates[0] <= n <= replicates[1]:
            return None
        parts: dict[str, dict[str, np.ndarray]] = {"metric": {}, "counter": {}, "sample": {}}
        for key, array in arrays.items():
            kind, _, name = key.partition(".")
            if kind not in parts:
                return None
            if kind in ("metric", "counter") and array.shape != (n,):
                return None
            if kind == "sample" and (array.ndim != 1 or name not in LABELS):
                return None
            if kind == "counter" and name not in COUNTERS:
                return None
            if kind == "metric" and not metrics.known(name, LABELS):   # not written by this code
                return None
            parts[kind][name] = array
        return CellResult(replicates=n, rounds=rounds,
                          metrics=parts["metric"], counters=parts["counter"], samples=parts["sample"])


def arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of ``arrays`` (sorted by name)."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()
