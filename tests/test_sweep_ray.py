"""End to end on Ray with the real engine: determinism, resume after SIGKILL, an existing cluster."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import subprocess_env

from study.runner import SerialExecutor, plan, run

pytestmark = pytest.mark.slow

TABLES = ("cells", "replicates", "calls")


def _tables(out: Path) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(out / "sweep" / "quick" / f"{name}.parquet") for name in TABLES}


def _assert_same(a: dict, b: dict) -> None:
    for name in TABLES:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True, obj=name)


def _serial(out: Path, *overrides: str) -> dict[str, pd.DataFrame]:
    """The reference: the same sweep in-process, one cell after the other."""
    p = plan(["sweep=quick", f"run.output_dir={out}", *overrides])
    run(p, executor=SerialExecutor(), log=lambda m: None, progress=False)
    return _tables(out)


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> dict[str, pd.DataFrame]:
    """The reference of every test here: sweep=quick in-process, one cell after the other."""
    return _serial(tmp_path_factory.mktemp("serial"))


def test_tables_identical_for_one_or_two_cpus_and_any_chunking(tmp_path, serial):
    one = plan(["sweep=quick", f"run.output_dir={tmp_path / 'one'}", "ray.num_cpus=1", "ray.cells_per_task=4"])
    two = plan(["sweep=quick", f"run.output_dir={tmp_path / 'two'}", "ray.num_cpus=2", "ray.cells_per_task=1"])
    assert run(one, log=lambda m: None, progress=False).computed == 6
    assert run(two, log=lambda m: None, progress=False).computed == 6
    a, b = _tables(tmp_path / "one"), _tables(tmp_path / "two")
    _assert_same(a, b)
    _assert_same(a, serial)


def test_killed_sweep_resumes_with_the_same_tables(tmp_path, study_env, serial):
    # one CPU and one cell per task: cells finish one by one, so the kill (within ~20 ms of
    # the first cell's file) lands part-way, with five cells of computing still to go
    args = [sys.executable, "-m", "study", "sweep", "sweep=quick", f"run.output_dir={tmp_path / 'out'}",
            "ray.num_cpus=1", "ray.cells_per_task=1"]
    cache = tmp_path / "out" / "sweep" / "quick" / "cells"
    proc = subprocess.Popen(args, cwd=tmp_path, env=study_env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not list(cache.glob("*.npz")) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray processes it started
        proc.wait()
    finished = len(list(cache.glob("*.npz")))
    assert 1 <= finished < 6, finished
    assert not (tmp_path / "out" / "sweep" / "quick" / "cells.parquet").exists()

    rerun = subprocess.run(args, cwd=tmp_path, env=study_env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    match = re.search(r"reused (\d+) cells, computing (\d+)", rerun.stderr)
    assert match and int(match.group(1)) == finished and int(match.group(2)) == 6 - finished, rerun.stderr
    _assert_same(_tables(tmp_path / "out"), serial)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A one-CPU Ray cluster started here with `ray start --head`: its address and the
    environment that reaches it (loopback only, a token of our own)."""
    port = _free_port()
    # loopback only (Ray otherwise advertises the host's routable address even when told
    # 127.0.0.1), and a token of our own for this throwaway cluster
    extra = dict(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    ray_cli = str(Path(sys.executable).parent / "ray")
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths have a length limit
    head = subprocess.Popen(
        [ray_cli, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=1",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp_dir}", "--block"],
        env=dict(subprocess_env(), STUDY_CONFIG_DIR=str(tmp_path_factory.getbasetemp() / "no-user-config"), **extra),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for_port(port, head)
        yield f"127.0.0.1:{port}", extra
    finally:
        # `ray stop` would end every Ray process on the host; end only the cluster started here
        _end_group(head)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_sweep_on_an_existing_cluster(tmp_path, study_env, serial, cluster):
    address, extra = cluster
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "study", "sweep", "sweep=quick", f"run.output_dir={out}",
                           f"ray.address={address}"],
                          cwd=tmp_path, env=dict(study_env, **extra), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    info = (out / "sweep" / "quick" / "run_info.json").read_text()  # where it ran: not in the hashed set
    assert f'"address": "{address}"' in info
    assert '"num_cpus": 1' in info
    _assert_same(_tables(out), serial)


@pytest.mark.alone  # the 30 s bound: no other test competes for the CPUs meanwhile
def test_the_cluster_without_its_token_is_one_line_within_30_s(tmp_path, study_env, cluster):
    # without the cluster's token: one line within seconds, not 20 s of warnings and a traceback
    address, extra = cluster
    no_token = {k: v for k, v in dict(study_env, **extra).items() if k not in ("RAY_AUTH_TOKEN", "RAY_AUTH_MODE")}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "study", "sweep", "sweep=quick", f"run.output_dir={tmp_path / 'out'}",
                           f"ray.address={address}", "run.rounds=7"],
                          cwd=tmp_path, env=no_token, capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - start
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert lines[-1].startswith("error: ray.address: "), proc.stderr
    assert "RAY_AUTH_MODE=token" in lines[-1] and "RAY_AUTH_TOKEN" in lines[-1], proc.stderr
    assert "Traceback" not in proc.stderr
    assert elapsed < 30, elapsed


def _wait_for_port(port: int, head: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert head.poll() is None, "ray start exited"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                time.sleep(2)  # the GCS answers before the raylet has registered
                return
        time.sleep(0.2)
    raise TimeoutError(f"ray head did not listen on {port}")


def _end_group(proc: subprocess.Popen) -> None:
    """End the `ray start --block` head and every process of its group.

    SIGTERM to the head alone: it drains the node and stops the processes it started, in
    seconds.  (A SIGTERM to the whole group stops the GCS first, and the head then waits a
    minute for it.)  Then SIGKILL to the group, for anything still there.
    """
    proc.send_signal(signal.SIGTERM)  # a no-op if it has exited already
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
