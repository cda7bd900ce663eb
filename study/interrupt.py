"""SIGTERM handled like Ctrl-C: what ``kill``, CI runners and systemd send stops a run cleanly.

The handler raises ``study.errors.Interrupted`` in the main thread, so every ``finally`` on
the way out runs (Ray tasks cancelled, the output directory's lock released, nothing
half-written), and the CLI prints one "interrupted" line and exits 128 + the signal.
No heavy imports here: every command installs it before anything else.
"""

from __future__ import annotations

import signal

from study.errors import Interrupted

# Signals received, last one last: Ray may re-raise our exception as a plain KeyboardInterrupt.
received: list[int] = []


def _stop(signum, frame):
    received.append(signum)
    raise Interrupted(signum)


def handle_sigterm() -> None:
    """Install the handler (again after ``ray.init``, which installs its own, aborting one)."""
    try:
        signal.signal(signal.SIGTERM, _stop)
    except ValueError:  # not the main thread (e.g. a notebook's worker thread): leave it
        pass
