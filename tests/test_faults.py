"""Fault injection: after any fault, the previous complete table set or the new complete one
is on disk (or a clear refusal), never a mix that a reader accepts.  (issue 14)

Faults: SIGKILL during cell computation and at three points of table writing, two
concurrent writers, a full disk (ENOSPC) and a read-only file system (EROFS) while writing,
a chunk that fails for good, corrupt and crafted cache files, temp files of live and dead
writers, an analysis or report that fails half-way.  Most run in-process or in a child
process with the serial executor and the fake engine; the Ray ones (a killed worker,
SIGTERM) are marked slow.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import fake_simulate

from study.analysis.load import load_sweep
from study.cli import analyze as analyze_cli
from study.cli import report as report_cli
from study.cli import sweep as sweep_cli
from study.errors import ConfigError
from study.results import files as outdir
from study.runner import SerialExecutor, plan, run
from study.runner.store import CellStore, arrays_digest, code_fingerprint

HERE = Path(__file__).resolve().parent
TABLES = ("cells", "replicates", "calls")
SET = ("cells.parquet", "cells.csv", "replicates.parquet", "calls.parquet", "manifest.json")


def _plan(out: Path, rounds: int = 50, *extra: str):
    return plan(["sweep=quick", f"run.output_dir={out}", f"run.rounds={rounds}", *extra])


def _sweep(out: Path, rounds: int = 50, simulate=fake_simulate, **kwargs):
    return run(_plan(out, rounds), executor=SerialExecutor(simulate), log=lambda m: None, progress=False, **kwargs)


def _frames(directory: Path) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(directory / f"{name}.parquet") for name in TABLES}


def _same(a: dict, b: dict) -> None:
    for name in TABLES:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True, obj=name)


def _bytes(directory: Path) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in SET}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[int, dict]:
    """Clean, uninterrupted runs at 50 and 60 rounds: what every faulty run must end up as."""
    root = tmp_path_factory.mktemp("reference")
    return {rounds: (_sweep(root / str(rounds), rounds), _frames(root / str(rounds) / "sweep" / "quick"))[1]
            for rounds in (50, 60)}


def _driver(out: Path, rounds: int, mode: str, env: dict, seconds: float = 0.0) -> subprocess.Popen:
    env = dict(env, FAULT_CELL_SECONDS=str(seconds))
    return subprocess.Popen([sys.executable, str(HERE / "fault_driver.py"), str(out), str(rounds), mode],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _assert_whole(directory: Path, expected: dict) -> None:
    """The set loads (hashes agree) and holds exactly the expected tables."""
    load_sweep(directory.parents[1], directory.name)
    _same(_frames(directory), expected)


# --- SIGKILL ---------------------------------------------------------------------------------

def test_kill_during_cell_computation_keeps_the_previous_set_and_resumes(tmp_path, study_env, reference):
    directory = tmp_path / "sweep" / "quick"
    _sweep(tmp_path, 50)
    previous = _bytes(directory)
    proc = _driver(tmp_path, 60, "slow", study_env, seconds=0.4)
    cache = directory / "cells"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        fresh = [p for p in cache.glob("*.npz") if p.stat().st_mtime > time.time() - 30]
        if len(fresh) > 6:  # the 6 cells of the first run plus at least one of this one
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert _bytes(directory) == previous  # the previous complete set, untouched
    _assert_whole(directory, reference[50])
    outcome = _sweep(tmp_path, 60, simulate=_slow_name_twin())
    assert outcome.reused >= 1  # what the killed run finished is kept
    _assert_whole(directory, reference[60])


def _slow_name_twin():
    """The driver's simulate (same name, so the same code fingerprint), without the sleep."""
    sys.path.insert(0, str(HERE))
    import fault_driver

    return fault_driver.slow_simulate


@pytest.mark.parametrize("mode", ["kill-in-write", "kill-at-commit", "kill-in-rename"])
def test_kill_during_table_writing(mode, tmp_path, study_env, reference, capsys):
    directory = tmp_path / "sweep" / "quick"
    _sweep(tmp_path, 50, simulate=_slow_name_twin())
    previous = _bytes(directory)
    proc = _driver(tmp_path, 60, mode, study_env)
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    if mode in ("kill-in-write", "kill-at-commit"):
        # killed before the first rename: the previous set is on disk, whole
        assert _bytes(directory) == previous
        _assert_whole(directory, reference[50])
    else:
        # killed between renames: readers refuse the directory until the next writer finishes the job
        assert analyze_cli.main(["--sweep", "quick", "--out", str(tmp_path)]) == 2
        line = capsys.readouterr().err.strip().splitlines()
        assert len(line) == 1 and line[0].startswith("error: sweep: "), line
    # the next run (here: the same config) ends with the new complete set
    outcome = _sweep(tmp_path, 60, simulate=_slow_name_twin())
    assert outcome.computed == 0
    _assert_whole(directory, reference[60])
    assert not (directory / outdir.STAGING).exists()


def test_mixed_set_is_refused_by_analyze(tmp_path, capsys):
    """The audit's mix: cells of one run beside replicates of another."""
    a, b = tmp_path / "a", tmp_path / "b"
    _sweep(a, 50)
    _sweep(b, 60)
    shutil.copy(b / "sweep" / "quick" / "replicates.parquet", a / "sweep" / "quick" / "replicates.parquet")
    assert analyze_cli.main(["--sweep", "quick", "--out", str(a)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "replicates.parquet does not match its manifest" in err[0], err
    assert not (a / "analysis").exists()


# --- two writers ---------------------------------------------------------------------------------

def test_two_concurrent_sweeps_second_is_refused_first_completes(tmp_path, study_env, reference, capsys):
    directory = tmp_path / "sweep" / "quick"
    proc = _driver(tmp_path, 50, "slow", study_env, seconds=0.3)
    lock = tmp_path / "sweep" / ".quick.lock"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (lock.exists() and lock.read_text().strip()):
        time.sleep(0.05)
    code = sweep_cli.main(["sweep=quick", f"run.output_dir={tmp_path}", "run.rounds=50"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [f"error: run.output_dir: {directory} is being written by pid {proc.pid}; "
                   "wait for it to finish (one writer per output directory)"]
    out, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    _assert_whole(directory, reference[50])


def test_lock_is_released_when_its_owner_dies(tmp_path):
    target = tmp_path / "d"
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[2]);"
        "from study.results.files import DirLock; l = DirLock(__import__('pathlib').Path(sys.argv[1])).__enter__();"
        "print('locked', flush=True); time.sleep(60)"), str(target), str(HERE.parent)],
        stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "locked"
    with pytest.raises(ConfigError, match=f"being written by pid {child.pid}"):
        outdir.DirLock(target).__enter__()
    child.kill()
    child.wait()
    with outdir.DirLock(target):  # the kernel dropped the dead owner's lock
        pass


def test_temp_files_are_removed_only_when_their_writer_is_gone(tmp_path):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        (tmp_path / f".cells.parquet.{live.pid}.abc123.tmp").write_text("in flight")
        (tmp_path / f".cells.parquet.{dead.pid}.abc123.tmp").write_text("torn")
        (tmp_path / ".old-style.tmp").write_text("torn, no pid")
        assert outdir.remove_stale_temps(tmp_path) == 2
        assert [p.name for p in tmp_path.iterdir()] == [f".cells.parquet.{live.pid}.abc123.tmp"]
    finally:
        live.kill()
        live.wait()


# --- full or read-only disk -------------------------------------------------------------------------

@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_disk_full_or_read_only_while_writing_tables(code, tmp_path, monkeypatch, capsys, reference):
    import study.runner.sweep as sweep_mod

    directory = tmp_path / "sweep" / "quick"
    _sweep(tmp_path, 50)
    previous = _bytes(directory)
    import study.results.tables as tables_mod

    real, calls = tables_mod.write_parquet, []

    def failing(frame, path, meta, atomic=True):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(code, os.strerror(code), str(path))
        real(frame, path, meta, atomic)

    monkeypatch.setattr(tables_mod, "write_parquet", failing)
    monkeypatch.setattr(sweep_mod, "RayExecutor", lambda *a, **k: SerialExecutor(fake_simulate))
    status = sweep_cli.main(["sweep=quick", f"run.output_dir={tmp_path}", "run.rounds=60"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert err[-1].startswith("error: ") and os.strerror(code) in err[-1] and "Traceback" not in "\n".join(err)
    assert _bytes(directory) == previous  # the previous complete set
    _assert_whole(directory, reference[50])
    monkeypatch.setattr(tables_mod, "write_parquet", real)
    assert sweep_cli.main(["sweep=quick", f"run.output_dir={tmp_path}", "run.rounds=60"]) == 0
    assert "reused 6 cells, computing 0" in capsys.readouterr().err  # the cells computed before the failure
    _same(_frames(directory), reference[60])


def test_disk_full_while_caching_a_cell_exits_1_in_one_line(tmp_path, monkeypatch, capsys):
    import study.runner.sweep as sweep_mod

    def full(self, cell_id, result):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path(cell_id)))

    monkeypatch.setattr(CellStore, "save", full)
    monkeypatch.setattr(sweep_mod, "RayExecutor", lambda *a, **k: SerialExecutor(fake_simulate))
    assert sweep_cli.main(["sweep=quick", f"run.output_dir={tmp_path}", "run.rounds=50"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "No space left on device" in err[-1]
    assert not (tmp_path / "sweep" / "quick" / "cells.parquet").exists()


# --- a chunk that fails for good -----------------------------------------------------------------------

def test_failed_chunk_others_finish_and_are_cached(tmp_path, monkeypatch, capsys, reference):
    import study.runner.sweep as sweep_mod

    def flaky(machine, workload, policy, **kw):
        if workload.name == "uffd_wp" and policy.name == "relaxed":
            raise RuntimeError("engine blew up")
        return fake_simulate(machine, workload, policy, **kw)

    flaky.__qualname__ = "fake_simulate"  # the same code fingerprint as the clean rerun
    flaky.__module__ = fake_simulate.__module__
    monkeypatch.setattr(sweep_mod, "RayExecutor", lambda *a, **k: SerialExecutor(flaky))
    code = sweep_cli.main(["sweep=quick", f"run.output_dir={tmp_path}", "run.rounds=50", "ray.cells_per_task=1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    # A setting's cells run as lanes of one pass (study.runner.lanes), so the failing relaxed
    # uffd_wp cell takes its strict sibling with it: 2 of 6 fail, the other settings' 4 are kept.
    assert re.match(r"error: sweep quick: 2 of 6 cells failed \(RuntimeError: engine blew up\); "
                    r"4 finished cells are kept", err[-1]), err
    assert len(list((tmp_path / "sweep" / "quick" / "cells").glob("*.npz"))) == 4
    assert not (tmp_path / "sweep" / "quick" / "cells.parquet").exists()
    outcome = _sweep(tmp_path, 50)
    assert (outcome.reused, outcome.computed) == (4, 2)
    _same(_frames(tmp_path / "sweep" / "quick"), reference[50])


# --- the cell cache ---------------------------------------------------------------------------------------

def _rewrite(path: Path, change) -> None:
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays.pop("meta")))
    change(arrays, meta)
    arrays["meta"] = np.array(json.dumps(meta))
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _altered_value(arrays, meta):
    key = next(k for k in arrays if k.startswith("metric."))
    arrays[key] = arrays[key] + 1.0


def _fewer_replicates_rehashed(arrays, meta):
    for k in list(arrays):
        if not k.startswith("sample."):
            arrays[k] = arrays[k][:-1]
    meta["shapes"] = {k: list(v.shape) for k, v in arrays.items()}
    meta["sha256"] = arrays_digest(arrays)


def _meta_says_fewer(arrays, meta):
    meta["replicates"] -= 1


def _no_replicates(arrays, meta):
    del meta["replicates"]


def _replicates_text(arrays, meta):
    meta["replicates"] = "4"


def _no_checksum(arrays, meta):
    del meta["sha256"]


def _shape_mismatch_rehashed(arrays, meta):
    key = next(k for k in arrays if k.startswith("counter."))
    arrays[key] = np.concatenate([arrays[key], arrays[key]])
    meta["sha256"] = arrays_digest(arrays)


def _extra_array(arrays, meta):
    arrays["metric.bogus"] = np.zeros(4)
    meta["shapes"]["metric.bogus"] = [4]
    meta["sha256"] = arrays_digest(arrays)


def _meta_list(arrays, meta):
    meta.clear()


def _crafted(change):
    def spoil(path):
        _rewrite(path, change)
    spoil.__name__ = change.__name__
    return spoil


def _truncated(path):
    path.write_bytes(path.read_bytes()[:100])


def _garbage(path):
    path.write_bytes(b"\x00" * 64)


def _empty(path):
    path.write_bytes(b"")


def _directory(path):
    path.unlink()
    (path / "inside").mkdir(parents=True)


def _other_cell(path):
    other = next(p for p in path.parent.glob("*.npz") if p != path)
    shutil.copy(other, path)


def _no_meta(path):
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files if k != "meta"}
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _meta_not_json(path):
    _rewrite(path, lambda a, m: None)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["meta"] = np.array("{nope")
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _pickled_object(path):
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["metric.total_cycles_per_round"] = np.array([{"evil": 1}], dtype=object)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


CACHE_SPOIL = [_crafted(_altered_value), _crafted(_fewer_replicates_rehashed), _crafted(_meta_says_fewer),
               _crafted(_no_replicates), _crafted(_replicates_text), _crafted(_no_checksum),
               _crafted(_shape_mismatch_rehashed), _crafted(_extra_array), _crafted(_meta_list),
               _truncated, _garbage, _empty, _directory, _other_cell, _no_meta, _meta_not_json, _pickled_object]


@pytest.fixture(scope="module")
def cached(tmp_path_factory) -> Path:
    """The cache of one finished quick sweep (6 cells)."""
    root = tmp_path_factory.mktemp("cached")
    _sweep(root, 50)
    return root / "sweep" / "quick" / "cells"


@pytest.mark.parametrize("spoil", CACHE_SPOIL, ids=[f.__name__ for f in CACHE_SPOIL])
def test_bad_cache_file_is_never_trusted(spoil, cached, tmp_path):
    shutil.copytree(cached, tmp_path / "cells")
    victim = sorted((tmp_path / "cells").glob("*.npz"))[0]
    store = CellStore(tmp_path / "cells", code_fingerprint(fake_simulate))
    assert store.load(victim.stem, (4, 4)) is not None  # trusted while intact
    spoil(victim)
    assert store.load(victim.stem, (4, 4)) is None
    others = [p.stem for p in sorted((tmp_path / "cells").glob("*.npz")) if p != victim]
    assert all(store.load(cell_id, (4, 4)) is not None for cell_id in others)


E2E_SPOIL = [_crafted(_altered_value), _crafted(_no_replicates), _directory, _truncated]


@pytest.mark.parametrize("spoil", E2E_SPOIL, ids=[f.__name__ for f in E2E_SPOIL])
def test_bad_cache_file_is_recomputed_and_never_fatal(spoil, cached, tmp_path, reference):
    shutil.copytree(cached.parent, tmp_path / "sweep" / "quick")
    victim = sorted((tmp_path / "sweep" / "quick" / "cells").glob("*.npz"))[0]
    spoil(victim)
    outcome = _sweep(tmp_path, 50)
    assert (outcome.reused, outcome.computed) == (5, 1)
    _same(_frames(tmp_path / "sweep" / "quick"), reference[50])
    assert victim.is_file()


def test_cache_round_trip_keeps_shapes_and_checksum(tmp_path):
    store = CellStore(tmp_path, code_fingerprint(fake_simulate))
    cell = _plan(tmp_path).cells[0].cell
    result = fake_simulate(cell.machine, cell.workload, cell.policy, replicates=4, rounds=10,
                           seed=cell.seed(0), max_samples=16)
    store.save("abc", result)
    again = store.load("abc", (4, 4))
    assert again is not None and again.replicates == 4
    for name, values in result.metrics.items():
        np.testing.assert_array_equal(again.metrics[name], values)
    assert store.load("abc", (5, 5)) is None  # another replicate count than the config asks for
    with zipfile.ZipFile(store.path("abc")) as z:
        assert "meta.npy" in z.namelist()


# --- analysis and report: a failure half-way keeps the previous set --------------------------------------

@pytest.fixture(scope="module")
def analysed(tmp_path_factory) -> Path:
    from synthetic import make_sweep

    root = tmp_path_factory.mktemp("analysed")
    make_sweep(root, name="s", grid="small", replicates=4, samples=10)
    assert analyze_cli.main(["--sweep", "s", "--out", str(root)]) == 0
    assert report_cli.main(["--out", str(root)]) == 0
    return root


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"), RuntimeError("plot failed")])
def test_analysis_failing_half_way_keeps_the_previous_analysis(error, analysed, tmp_path, monkeypatch, capsys):
    from study.analysis import plots

    shutil.copytree(analysed, tmp_path, dirs_exist_ok=True)
    before = _tree(tmp_path / "analysis")
    metrics = (tmp_path / "metrics.json").read_bytes()

    def boom(results, target):
        (Path(target) / "half.svg").write_text("<svg")
        raise error

    monkeypatch.setattr(plots, "render_all", boom)
    assert analyze_cli.main(["--sweep", "s", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert _tree(tmp_path / "analysis") == before
    assert (tmp_path / "metrics.json").read_bytes() == metrics
    assert not any(p.name.startswith(".analysis.") for p in tmp_path.iterdir() if p.is_dir())
    assert report_cli.main(["--out", str(tmp_path)]) == 0  # the previous analysis is still whole


def test_interrupted_analysis_swap_is_completed_by_the_next_writer(analysed, tmp_path):
    shutil.copytree(analysed, tmp_path, dirs_exist_ok=True)
    target = tmp_path / "analysis"
    # killed between the swap's two renames: the old set moved aside, the new one complete
    shutil.copytree(target, tmp_path / ".analysis.staging")
    (tmp_path / ".analysis.staging" / ".COMMIT").write_text("complete\n")
    os.replace(target, tmp_path / ".analysis.old")
    outdir.recover_swap(target)
    assert (target / "analysis.json").is_file()
    assert not (tmp_path / ".analysis.old").exists() and not (tmp_path / ".analysis.staging").exists()
    # killed before the staging directory was complete: the previous set comes back
    os.replace(target, tmp_path / ".analysis.old")
    (tmp_path / ".analysis.staging").mkdir()
    outdir.recover_swap(target)
    assert (target / "analysis.json").is_file() and not (tmp_path / ".analysis.staging").exists()


def test_report_failing_half_way_keeps_the_previous_report(analysed, tmp_path, monkeypatch, capsys):
    from study.report import pdf

    shutil.copytree(analysed, tmp_path, dirs_exist_ok=True)
    before = _tree(tmp_path / "report")
    monkeypatch.setattr(pdf, "render", lambda doc: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left")))
    assert report_cli.main(["--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip().startswith("error: ")
    assert _tree(tmp_path / "report") == before


def test_second_analyze_is_refused_while_one_writes(analysed, tmp_path, capsys):
    shutil.copytree(analysed, tmp_path, dirs_exist_ok=True)
    before = _tree(tmp_path / "analysis")
    with outdir.DirLock(tmp_path / "analysis"):
        assert analyze_cli.main(["--sweep", "s", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"is being written by pid {os.getpid()}" in err and len(err.splitlines()) == 1
    assert _tree(tmp_path / "analysis") == before


# --- Ray: a killed worker, SIGTERM ---------------------------------------------------------------------------

def kill_worker_once(machine, workload, policy, **kw):
    """The fake engine, except that the first call for uffd_wp kills its own worker (SIGKILL)."""
    marker = Path(os.environ["FAULT_MARKER"])
    if workload.name == "uffd_wp" and not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return fake_simulate(machine, workload, policy, **kw)


@pytest.mark.slow
def test_killed_ray_worker_is_retried_and_the_tables_are_identical(tmp_path, monkeypatch, reference):
    import ray.cloudpickle

    from study.runner import RayExecutor

    monkeypatch.setenv("FAULT_MARKER", str(tmp_path / "killed"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.cloudpickle.register_pickle_by_value(sys.modules["conftest"])
    outcome = run(_plan(tmp_path / "out", 50, "ray.cells_per_task=1"),
                  executor=RayExecutor(num_cpus=1, simulate=kill_worker_once), log=lambda m: None, progress=False)
    assert (tmp_path / "killed").exists()  # a worker did die
    assert outcome.computed == 6
    _same(_frames(tmp_path / "out" / "sweep" / "quick"), reference[50])


@pytest.mark.slow
def test_sigterm_stops_the_sweep_like_ctrl_c(tmp_path, study_env):
    args = [sys.executable, "-m", "study", "sweep", "sweep=quick", f"run.output_dir={tmp_path / 'out'}",
            "ray.num_cpus=1", "ray.cells_per_task=1", "run.rounds=3000"]
    cache = tmp_path / "out" / "sweep" / "quick" / "cells"
    proc = subprocess.Popen(args, cwd=tmp_path, env=study_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 180
    while not list(cache.glob("*.npz")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    lines = [line for line in err.splitlines() if line.startswith("interrupted")]
    assert lines == ["interrupted (SIGTERM): finished cells are kept and reused by the next run; "
                     "the previous tables are unchanged"], err
    assert "Traceback" not in err
    assert list(cache.glob("*.npz"))
    assert not (tmp_path / "out" / "sweep" / "quick" / "cells.parquet").exists()
