"""A sweep in a child process, for the fault-injection tests (tests/test_faults.py).

    python tests/fault_driver.py OUT ROUNDS MODE

Runs ``sweep=quick`` into OUT with the serial executor and the fake engine of conftest
(slowed down so that a test can act mid-run), and kills itself with SIGKILL where MODE says:

* ``slow``: no kill; each cell takes ~0.3 s;
* ``kill-in-write``: while the second table is being written into the staging directory;
* ``kill-at-commit``: right after the staging directory is marked complete;
* ``kill-in-rename``: after two of the set's files have been renamed into place.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from conftest import fake_simulate  # noqa: E402

from study.results import files as outdir, tables  # noqa: E402
from study.runner import SerialExecutor, plan, run, sweep  # noqa: E402


def slow_simulate(*args, **kwargs):
    time.sleep(float(os.environ.get("FAULT_CELL_SECONDS", "0")))
    return fake_simulate(*args, **kwargs)


def _die() -> None:
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def main(out: str, rounds: str, mode: str) -> int:
    if mode == "kill-in-write":
        real, calls = tables.write_parquet, []

        def write_parquet(frame, path, meta, atomic=True):
            calls.append(path)
            if len(calls) == 2:
                Path(path).write_bytes(b"PAR1 half")  # a torn write, then death
                _die()
            real(frame, path, meta, atomic)

        tables.write_parquet = write_parquet
    elif mode == "kill-at-commit":
        outdir._roll_forward = lambda directory: _die()
    elif mode == "kill-in-rename":
        def roll(directory):
            staging = Path(directory) / outdir.STAGING
            names = json.loads((staging / outdir.COMMIT).read_text())
            for name in names[:2]:
                os.replace(staging / name, Path(directory) / name)
            _die()

        outdir._roll_forward = roll
    p = plan(["sweep=quick", f"run.output_dir={out}", f"run.rounds={rounds}"])
    print(f"pid {os.getpid()} planned", flush=True)
    # imported by name, not run as __main__: its name is part of the code fingerprint, which
    # the tests' in-process reruns (importing fault_driver) must share
    import fault_driver

    run(p, executor=SerialExecutor(fault_driver.slow_simulate), progress=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
