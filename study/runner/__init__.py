"""The runner: expand a sweep's grid into cells, run them (serially or on Ray), write tables.

    from study.runner import plan, run
    outcome = run(plan(["sweep=quick"]))   # -> outputs/sweep/quick/

``run_cell(cell)`` runs one cell to its replicate count (the ``run`` command uses it too).
"""

import importlib

# Loaded on first use: ``import study.runner.store`` (the CLI's file writers) must not pull in
# Ray, pandas and the engine, or every ``--help`` would take seconds.
_LAZY = {"RayExecutor": "executor", "SerialExecutor": "executor", "run_cell": "replicate",
         "Outcome": "sweep", "Plan": "sweep", "plan": "sweep", "run": "sweep"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"study.runner.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'study.runner' has no attribute {name!r}")


__all__ = ["Outcome", "Plan", "RayExecutor", "SerialExecutor", "plan", "run", "run_cell"]
