"""Provenance of a results directory: package versions, git revision, the host it ran on."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

import study

PACKAGES = ("numpy", "scipy", "ray", "hydra-core", "omegaconf", "pandas", "pyarrow")


def versions() -> dict[str, str | None]:
    """Versions of study and the packages whose behaviour shapes the numbers or the files."""
    found: dict[str, str | None] = {"study": study.__version__}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def git_revision() -> str | None:
    """The commit of the study checkout (``+dirty`` if it has changes), or None outside git."""
    root = Path(study.__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
        return rev.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def host() -> dict[str, object]:
    """The machine the sweep ran on (the simulated machine is in the config)."""
    return {"platform": platform.platform(), "python": platform.python_version(),
            "cpu_model": _cpu_model(), "cpus": os.cpu_count()}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
