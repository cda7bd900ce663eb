"""study: when do relaxed TLB flushes beat strict TLB shootdowns, by how much, and where do they lose?"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``study.load``, ``study.run_cell``, ``study.run_sweep`` (study/api.py), loaded on first use."""
    if name in ("load", "run_cell", "run_sweep", "Results"):
        from study import api

        return getattr(api, name)
    raise AttributeError(f"module 'study' has no attribute {name!r}")
