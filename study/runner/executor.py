"""Executors run chunks of cells and hand back results as chunks finish.

Both have one interface: a context manager whose ``run(chunks)`` yields
``(chunk_index, [(cell_id, CellResult, seconds), ...])`` in completion order.  The caller never
depends on that order: results are keyed by cell_id and every cell seeds itself.
``SerialExecutor`` runs in-process (unit tests, debugging); ``RayExecutor`` ships each
chunk as one Ray task, to an embedded local instance or to an existing cluster.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import socket
import time
from dataclasses import dataclass
from typing import Iterator

from study.config.cell import Cell
from study.errors import ConfigError
from study.interrupt import handle_sigterm
from study.runner.replicate import Simulate
from study.workloads.result import CellResult

# (cell_id, result, seconds spent computing it)
ChunkResult = list[tuple[str, CellResult, float]]

# Times a Ray chunk task is rerun after its worker died (killed, OOM-killed, node lost).
# Chunks are deterministic (every cell seeds itself), so a rerun gives the same numbers.
CHUNK_RETRIES = 3
# Seconds to wait for a TCP answer from ray.address before calling it unreachable.
CONNECT_TIMEOUT_S = 3.0


@dataclass
class ChunkFailure:
    """A chunk that failed for good (after its retries); the other chunks go on."""

    reason: str


def check_address(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast, in one line, when ``host:port`` does not answer (Ray itself retries for minutes)."""
    text = address.removeprefix("ray://")
    if text == "auto":
        return
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError("ray.address", f"must be host:port (or null for a local instance), got {address!r}")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as sock:
            # Ray's GCS (and Ray Client) speak gRPC, i.e. HTTP/2: a server answers the client's
            # connection preface with a SETTINGS frame at once.  Something else listening
            # there would leave ray.init retrying in C++ for minutes, beyond any signal.
            sock.sendall(_H2_PREFACE)
            answer = b""
            while len(answer) < 9:
                chunk = sock.recv(9 - len(answer))
                if not chunk:
                    break
                answer += chunk
    except OSError as err:
        reason = err.strerror or type(err).__name__
        if isinstance(err, TimeoutError) or isinstance(err, socket.timeout):
            reason = f"no answer within {timeout:.0f} s"
        raise ConfigError("ray.address", f"cannot reach a Ray cluster at {address} ({reason}); "
                                         "check the address, or use null for a local instance") from None
    if len(answer) < 9 or answer[3] != 0x4:  # frame type 4: SETTINGS
        raise ConfigError("ray.address", f"{address} answers, but not as a Ray cluster (no gRPC/HTTP2 reply); "
                                         "check the port (the head's GCS port, 6379 by default)")


# HTTP/2 client connection preface followed by an empty SETTINGS frame (RFC 9113, 3.4)
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def run_chunk(cells: list[Cell], simulate: Simulate | None = None) -> ChunkResult:
    """One task's work: its cells, those of one setting together (study.runner.lanes)."""
    from study.runner.lanes import run_cells

    return run_cells(cells, simulate)


class SerialExecutor:
    """Runs chunks one by one in this process."""

    def __init__(self, simulate: Simulate | None = None):
        self.simulate = simulate

    def __enter__(self) -> "SerialExecutor":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def describe(self) -> dict:
        return {"executor": "serial", "num_cpus": 1}

    def run(self, chunks: list[list[Cell]]) -> Iterator[tuple[int, ChunkResult | ChunkFailure]]:
        for index, chunk in enumerate(chunks):
            try:
                done = run_chunk(chunk, self.simulate)
            except Exception as err:  # the other chunks still run and are cached
                yield index, ChunkFailure(f"{type(err).__name__}: {err}".splitlines()[0])
                continue
            yield index, done


class RayExecutor:
    """Runs each chunk as a Ray task.

    ``address`` None starts an embedded instance with ``num_cpus`` CPUs (all if None),
    unless $RAY_ADDRESS names a cluster; a ``host:port`` joins that cluster.  Only an
    instance started here is shut down on exit.
    """

    def __init__(self, address: str | None = None, num_cpus: int | None = None, simulate: Simulate | None = None,
                 runtime_env: dict | None = None, include_dashboard: bool = False):
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.num_cpus = num_cpus
        self.include_dashboard = include_dashboard
        self.runtime_env = runtime_env
        if runtime_env is None and self.address:
            # Cluster nodes need this code: ship the package itself (Ray uploads the directory
            # and puts it on the workers' sys.path).  Dependencies are the user's choice
            # (ray.runtime_env.pip, or an image that has them).
            self.runtime_env = {"py_modules": [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))],
                                "excludes": ["__pycache__", "*.pyc"]}
        self.simulate = simulate
        self._started = False
        self._task = None

    def __enter__(self) -> "RayExecutor":
        if not self.address:
            # A one-host instance needs no routable address: this Ray switch (read when ray is
            # imported) makes it bind and advertise loopback only, as on macOS/Windows.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        import ray

        # Ray's own INFO lines (dashboard, "Started a local Ray instance") are noise here;
        # worker output is not forwarded either: errors come back as exceptions.
        options = dict(include_dashboard=self.include_dashboard, logging_level=logging.ERROR, log_to_driver=False,
                       configure_logging=True)
        if self.runtime_env:
            options["runtime_env"] = dict(self.runtime_env)
        if not ray.is_initialized():
            try:
                if self.address:
                    check_address(self.address)
                    with _captured_stderr() as captured:
                        try:
                            ray.init(address=self.address, **options)
                        except Exception as err:
                            raise ConfigError("ray.address", ray_init_error(self.address, err, captured())) from None
                else:
                    # "local" never attaches to a cluster a `ray start` left running on this host
                    ray.init(address="local", num_cpus=self.num_cpus, **options)
            except ConfigError:
                raise
            except Exception as err:
                raise ConfigError("ray.address", ray_init_error(self.address, err)) from None
            self._started = True
        handle_sigterm()  # ray.init replaced our handler with its own (which aborts)
        # max_retries: a chunk whose worker died is rerun (deterministic, so safe); an
        # exception raised by the chunk's code is not retried (it would fail again)
        self._task = ray.remote(num_cpus=1, max_retries=CHUNK_RETRIES)(run_chunk)
        return self

    def __exit__(self, *exc) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def describe(self) -> dict:
        import ray

        cpus = int(ray.cluster_resources().get("CPU", 0)) if ray.is_initialized() else None
        return {"executor": "ray", "address": self.address or "local", "num_cpus": cpus,
                "ray_version": ray.__version__}

    def run(self, chunks: list[list[Cell]]) -> Iterator[tuple[int, ChunkResult | ChunkFailure]]:
        import ray
        from ray.exceptions import RayError

        pending = {self._task.remote(chunk, self.simulate): index for index, chunk in enumerate(chunks)}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    index = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except RayError as err:  # retries exhausted or the chunk's code raised
                        yield index, ChunkFailure(_ray_reason(err))
                        continue
                    yield index, result
        finally:
            for ref in pending:  # an error or an interrupt: don't leave work running
                ray.cancel(ref, force=True)


def _ray_reason(err: Exception) -> str:
    """One line for a failed chunk: the exception type and the first line of its message."""
    cause = getattr(err, "cause", None)
    if cause is not None and not isinstance(cause, type(err)):
        return f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


@contextlib.contextmanager
def _captured_stderr():
    """Hold back what Ray's C++ core prints on file descriptor 2 while joining a cluster.

    A refused token makes it print one warning a second for ~20 s before ray.init gives
    up; the failure is reported in one line instead (and the warnings are scanned for why).
    Yields a function returning the text captured so far.
    """
    import tempfile

    sys.stderr.flush()
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)

        def text() -> str:
            sink.seek(0)
            return sink.read().decode(errors="replace")

        try:
            yield text
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


# Ray's client turns token authentication on only with RAY_AUTH_MODE=token (ray 2.5x-2.60:
# ray._private.authentication.authentication_token_setup); the token alone is not sent
AUTH_HINT = ("RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN (or a file named by "
             "RAY_AUTH_TOKEN_PATH)")


def ray_init_error(address: str | None, err: Exception, stderr: str = "") -> str:
    """What ray.init's failure means, in one line."""
    if any(word in stderr for word in ("Unauthenticated", "InvalidAuthToken")):
        return (f"the Ray cluster at {address} refused the connection: its token authentication needs "
                f"{AUTH_HINT}")
    text = " ".join(str(err).split())
    where = f"the Ray cluster at {address}" if address else "a local Ray instance"
    if any(word in text.lower() for word in ("auth", "token", "unauthenticated", "permission denied")):
        return f"{where} refused the connection (authentication: {AUTH_HINT}): {text[:200]}"
    return f"cannot start or join {where}: {type(err).__name__}: {text[:200]}"
