"""Compile the shipped microbenchmark (bench.c) with the system's C compiler, into a cache.

The compiler is ``$CC`` if set, else the first of ``cc``, ``gcc``, ``clang`` on PATH.  The
binary lives outside the repository (``$XDG_CACHE_HOME/study`` or ``~/.cache/study``),
keyed by the source's sha256 and the compiler's path and version, so an edited source or
another compiler never reuses a stale binary; the build goes to a temporary name and is
renamed into place (two concurrent builds cannot leave a half-written binary).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from study.errors import ConfigError

COMPILERS = ("cc", "gcc", "clang")
CFLAGS = ("-O2", "-std=gnu11", "-Wall", "-pthread")


def source() -> bytes:
    return resources.files("study.measure").joinpath("bench.c").read_bytes()


def find_compiler() -> list[str]:
    """The compiler command, or a ConfigError naming what was tried."""
    cc = os.environ.get("CC")
    if cc:
        argv = shlex.split(cc)
        if argv and shutil.which(argv[0]):
            return [shutil.which(argv[0])] + argv[1:]
        raise ConfigError("CC", f"the C compiler {cc!r} from $CC was not found; install a C compiler "
                                f"or point $CC at one (the benchmark is compiled at run time)")
    for name in COMPILERS:
        path = shutil.which(name)
        if path:
            return [path]
    raise ConfigError("CC", f"no C compiler found (tried $CC, {', '.join(COMPILERS)} on PATH); "
                            "install one (e.g. gcc) to measure this machine")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "study" / "bench"


def compiler_version(cc: list[str]) -> str:
    try:
        res = subprocess.run(cc + ["--version"], capture_output=True, text=True, timeout=30)
        return res.stdout.splitlines()[0] if res.stdout else ""
    except (OSError, subprocess.TimeoutExpired):
        return ""


def build() -> tuple[Path, dict]:
    """The compiled benchmark's path (built if not cached) and how it was built."""
    cc = find_compiler()
    version = compiler_version(cc)
    src = source()
    key = hashlib.sha256(src + "\0".join(cc + [version, *CFLAGS]).encode()).hexdigest()[:16]
    binary = cache_dir() / f"bench-{key}"
    info = {"compiler": " ".join(cc), "compiler_version": version, "cflags": " ".join(CFLAGS),
            "source_sha256": hashlib.sha256(src).hexdigest(), "binary": str(binary)}
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary, info
    binary.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=binary.parent) as tmp:
        c_file = Path(tmp) / "bench.c"
        c_file.write_bytes(src)
        out = Path(tmp) / "bench"
        res = subprocess.run(cc + list(CFLAGS) + ["-o", str(out), str(c_file)], capture_output=True, text=True)
        if res.returncode != 0:
            first = (res.stderr.strip().splitlines() or ["no output"])[0]
            raise ConfigError("CC", f"compiling the benchmark with {' '.join(cc)} failed: {first}")
        os.replace(out, binary)
    return binary, info
