"""Shared fixtures: the repo on sys.path, a subprocess environment, a fake engine, one analyzed
synthetic sweep; and the hooks that order modules and run ``alone`` tests under pytest-xdist."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the package is used from the checkout, not installed
    sys.path.insert(0, str(REPO))

from study.workloads.result import COUNTERS, CellResult  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """Modules with slow (end-to-end) tests first, then the others by their number of tests,
    largest first; each module's tests in their own order.  pytest-xdist hands whole modules
    to its workers in this order (--no-loadscope-reorder in pyproject.toml), so the long ones
    start early instead of keeping one worker busy while the other has finished."""
    modules: dict[str, list] = {}
    for item in items:
        entry = modules.setdefault(item.nodeid.split("::")[0], [0, False])
        entry[0] += 1
        entry[1] |= item.get_closest_marker("slow") is not None
    rank = {path: (not slow, -count, path) for path, (count, slow) in modules.items()}
    items.sort(key=lambda item: rank[item.nodeid.split("::")[0]])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Under pytest-xdist, a test marked ``alone`` (it asserts a wall-clock bound) runs while no
    other test does: it waits for the tests running on the other workers to end, and they
    start none until it is done, so the bound means what it does in a one-process run.

    A lock pair in the session's temp directory (above every worker's own): every test holds
    ``alone.lock`` shared, an ``alone`` test exclusive; ``alone.gate`` is taken first by both,
    and held by an ``alone`` test while it waits, so that new tests cannot keep it waiting.
    Setup and teardown count: the protocol covers the fixtures a test sets up and those that
    end with it.
    """
    basetemp = item.config.option.basetemp  # a worker's: <session>/popen-gwN (pytest-xdist)
    if not os.environ.get("PYTEST_XDIST_WORKER") or not basetemp:
        yield
        return
    import fcntl

    alone = item.get_closest_marker("alone") is not None
    session = Path(basetemp).parent
    with open(session / "alone.gate", "a") as gate, open(session / "alone.lock", "a") as lock:
        fcntl.flock(gate, fcntl.LOCK_EX)
        fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(autouse=True)
def _no_user_config_dir(tmp_path_factory, monkeypatch):
    """No test reads the developer's ~/.config/study: the user config dir is an empty place."""
    if not os.environ.get("STUDY_CONFIG_DIR"):  # a module fixture may have chosen one
        monkeypatch.setenv("STUDY_CONFIG_DIR", str(tmp_path_factory.getbasetemp() / "no-user-config"))


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def synthetic_out(tmp_path_factory) -> Path:
    """One full synthetic sweep (study.analysis.synthetic), analyzed and reported, shared by every
    module that reads such an output (analysis, report, dvc plots): ``<root>/sweep/synthetic/``,
    ``analysis/``, ``metrics.json``, ``report/``.  Under pytest-xdist the workers share one,
    built by the first that needs it (the others wait on a lock).

    Read-only: a test that changes files works on a copy.  The session's end checks that
    every file is still as written here, so a test that writes into it fails.
    """
    import fcntl
    import json
    import shutil

    from synthetic import make_sweep
    from study.cli import analyze as analyze_cli
    from study.cli import report as report_cli

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's directory, above every worker's own
    root, done = base / "synthetic", base / "synthetic.json"
    with open(base / "synthetic.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(root, ignore_errors=True)  # a build that failed half-way
            make_sweep(root, name="synthetic")
            assert analyze_cli.main(["--sweep", "synthetic", "--out", str(root)]) == 0
            assert report_cli.main(["--out", str(root)]) == 0
            done.write_text(json.dumps(_digests(root)))
    written = json.loads(done.read_text())
    assert _digests(root) == written, "a test changed the shared synthetic output; work on a copy"
    yield root
    assert _digests(root) == written, "a test changed the shared synthetic output; work on a copy"


def subprocess_env() -> dict[str, str]:
    """This process's environment for ``python -m study`` (or Ray) in a subprocess run from
    another directory: this checkout on PYTHONPATH, no RAY_ADDRESS."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("RAY_ADDRESS", None)
    return env


@pytest.fixture
def study_env() -> dict[str, str]:
    """Environment for ``python -m study`` in a subprocess run from another directory."""
    return subprocess_env()


def fake_simulate(machine, workload, policy, *, replicates, rounds, seed, max_samples=2048, kernel=None,
                  warmup_rounds=0):
    """A cheap stand-in for simulate_cell with its contract: same seed, same numbers.

    The noise comes from the seed alone and the policy only shifts the mean, so strict and
    relaxed cells of one setting differ by exactly that shift when they share streams.
    """
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 20.0, replicates)
    shift = -300.0 * policy.relaxed_flush_on_upgrade
    base = 2000.0 + 400.0 * workload.threads + shift
    metrics = {
        CellResult.MAIN_METRIC: base + noise,
        "lat_write": 100.0 + noise / 10,
        "lat_mprotect_ro": np.full(replicates, np.nan) if workload.name == "uffd_wp" else 2400.0 + noise,
    }
    counters = {name: rng.integers(0, 4, replicates) * rounds for name in COUNTERS}
    n = min(max_samples, replicates * 8)
    samples = {"write": rng.integers(80, 120, n)}
    if workload.name != "uffd_wp":
        samples["mprotect_ro"] = rng.integers(2000, 3000, n)
    return CellResult(replicates=replicates, rounds=rounds, metrics=metrics, counters=counters, samples=samples)
