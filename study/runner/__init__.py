"""The runner: expand a sweep's grid into cells, run them (serially or on Ray), write tables.

    from study.runner import plan, run
    outcome = run(plan(["sweep=quick"]))   # -> outputs/sweep/quick/

``run_cell(cell)`` runs one cell to its replicate count (the ``run`` command uses it too).
"""

from study.runner.executor import RayExecutor, SerialExecutor
from study.runner.replicate import run_cell
from study.runner.sweep import Outcome, Plan, plan, run

__all__ = ["Outcome", "Plan", "RayExecutor", "SerialExecutor", "plan", "run", "run_cell"]
