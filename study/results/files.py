"""Output directories that are never half-true: one writer at a time, whole sets or none.

Three promises, shared by the sweep (``outputs/sweep/<name>/``), the analysis
(``outputs/analysis/``) and the report (``outputs/report/``):

* **One writer**: ``DirLock`` takes an exclusive ``flock`` on ``<parent>/.<name>.lock``
  while a directory is written.  A second writer is refused with "being written by pid N"
  (a ConfigError: exit 2).  The kernel drops the lock when its owner dies, even by
  kill -9, so a stale lock never blocks anyone; the file itself is left in place.
* **Temp files removed only when their owner is gone**: temporary names carry the writer's
  pid (``.<file>.<pid>.<random>.tmp``); ``remove_stale_temps`` deletes one only when that
  pid is no longer alive (and it is only ever called under the directory's lock).
* **Whole sets**: ``commit_files`` writes a set of files into ``<dir>/.staging/``, records
  the sha256 of each in the set's manifest (written last), marks the staging directory
  complete, and only then renames the files into place, the manifest last.  A crash before
  the mark leaves the previous set untouched; a crash during the renames is rolled forward
  by ``recover`` at the next writer's start, and until then ``verify_files`` (what the
  readers call) sees the old manifest disagree with the new tables and refuses the set.
  ``swap_directory`` does the same for a directory replaced as a whole (the analysis).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from study.errors import ConfigError

STAGING = ".staging"
COMMIT = "COMMIT"
# Longest path the checks accept; most filesystems allow 4096 bytes and 255 per name.
MAX_PATH, MAX_NAME = 4096, 255


class BusyError(ConfigError):
    """Another live process holds the directory's lock."""


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


class DirLock:
    """An exclusive, non-blocking lock on ``directory`` (a file beside it), as a context manager."""

    def __init__(self, directory: Path, key: str = "output"):
        self.directory = Path(directory)
        self.key = key
        self.path = self.directory.parent / f".{self.directory.name}.lock"
        self._fd: int | None = None

    def __enter__(self) -> "DirLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                raise
            owner = _read_pid(self.path)
            who = f"pid {owner}" if owner else "another process"
            raise BusyError(self.key, f"{self.directory} is being written by {who}; "
                                      "wait for it to finish (one writer per output directory)") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


_TEMP = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")


def temp_prefix(name: str) -> str:
    """The prefix of a temporary file for ``name`` written by this process."""
    return f".{name}.{os.getpid()}."


def remove_stale_temps(directory: Path) -> int:
    """Delete the temporary files in ``directory`` whose writing process is gone."""
    removed = 0
    if not Path(directory).is_dir():
        return 0
    for path in Path(directory).glob(".*.tmp"):
        match = _TEMP.match(path.name)
        if match and pid_alive(int(match.group(1))) and int(match.group(1)) != os.getpid():
            continue  # a live writer's file (cannot happen under the lock, but never race it)
        if path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def commit_files(directory: Path, writers: dict[str, Callable[[Path], None]], manifest: str,
                 make_manifest: Callable[[dict[str, str]], dict]) -> None:
    """Write a whole set of files into ``directory``, or leave its previous set in place.

    ``writers`` maps each file name to a function writing it at a given path;
    ``make_manifest(hashes)`` returns the manifest (JSON) given ``{name: sha256}``, which is
    stored under its ``files`` key.  Call under the directory's DirLock.
    """
    directory = Path(directory)
    staging = directory / STAGING
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        hashes: dict[str, str] = {}
        for name, write in writers.items():
            write(staging / name)
            hashes[name] = sha256_file(staging / name)
        data = make_manifest(dict(hashes))
        data["files"] = hashes
        (staging / manifest).write_text(json.dumps(data, indent=2, default=str) + "\n")
        for name in [*writers, manifest]:
            with open(staging / name, "rb") as f:
                os.fsync(f.fileno())
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # before the commit point: as if never begun
        raise
    # the commit point: from here on the set is whole and a crash is rolled forward
    (staging / f".{COMMIT}.tmp").write_text(json.dumps([*writers, manifest]))
    os.replace(staging / f".{COMMIT}.tmp", staging / COMMIT)
    _fsync_dir(staging)
    _roll_forward(directory)


def _roll_forward(directory: Path) -> None:
    staging = directory / STAGING
    names = json.loads((staging / COMMIT).read_text())
    for name in names:  # the manifest is last: until it lands, readers see the old one disagree
        if (staging / name).exists():
            os.replace(staging / name, directory / name)
    _fsync_dir(directory)
    shutil.rmtree(staging, ignore_errors=True)


def recover(directory: Path) -> str | None:
    """Finish or discard what a killed writer left in ``directory`` (call under its lock)."""
    directory = Path(directory)
    staging = directory / STAGING
    if not staging.is_dir():
        return None
    try:
        if (staging / COMMIT).is_file():
            _roll_forward(directory)
            return "completed an interrupted table write"
    except (OSError, ValueError):
        pass
    shutil.rmtree(staging, ignore_errors=True)
    return "discarded an unfinished table write"


def verify_files(directory: Path, manifest: dict, key: str) -> None:
    """Refuse a set whose files do not match the hashes in its manifest (one ConfigError)."""
    directory = Path(directory)
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise ConfigError(key, f"{directory}: the manifest lists no table hashes (an incomplete or "
                               "older set); rerun the command that writes it")
    for name, expected in sorted(files.items()):
        path = directory / name
        if not path.is_file():
            raise ConfigError(key, f"{path} is missing from the set its manifest describes; rerun")
        if sha256_file(path) != expected:
            raise ConfigError(key, f"{path} does not match its manifest (a mixed or altered table set); "
                                   "rerun the command that writes it")


def swap_directory(target: Path, build: Callable[[Path], None]) -> None:
    """Build a directory beside ``target`` and swap it in whole (the old one is removed after).

    A crash while building leaves ``target`` as it was; ``recover_swap`` (at the next
    writer's start) completes a swap that was interrupted between its two renames.
    """
    target = Path(target)
    staging = target.parent / f".{target.name}.staging"
    old = target.parent / f".{target.name}.old"
    for leftover in (staging, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    staging.mkdir(parents=True)
    try:
        build(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    (staging / f".{COMMIT}").write_text("complete\n")
    _fsync_dir(staging)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    (target / f".{COMMIT}").unlink(missing_ok=True)
    _fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def recover_swap(target: Path) -> None:
    """Complete or discard an interrupted ``swap_directory`` of ``target`` (under its lock)."""
    target = Path(target)
    staging = target.parent / f".{target.name}.staging"
    old = target.parent / f".{target.name}.old"
    if staging.is_dir():
        if (staging / f".{COMMIT}").is_file() and not target.exists():
            os.replace(staging, target)
            (target / f".{COMMIT}").unlink(missing_ok=True)
        else:
            shutil.rmtree(staging, ignore_errors=True)
    if old.is_dir():
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, target)  # the new set never arrived: keep the previous one


def check_output_dir(path: Path | str, key: str) -> Path:
    """Check, before any work, that ``path`` can be created and written; nothing is created.

    Refuses an empty name, over-long paths or names, a file (or a file as an ancestor), and
    a directory or nearest existing ancestor that is not writable.
    """
    text = str(path)
    if not text.strip() or "\0" in text:
        raise ConfigError(key, f"must be a directory path, got {text!r}")
    resolved = Path(os.path.abspath(os.path.expanduser(text)))
    if len(str(resolved).encode()) > MAX_PATH - 256:
        raise ConfigError(key, f"path too long ({len(str(resolved))} characters; at most {MAX_PATH - 256})")
    for part in resolved.parts:
        if len(part.encode()) > MAX_NAME:
            raise ConfigError(key, f"a path component is longer than {MAX_NAME} bytes: {part[:40]}...")
    if resolved == Path(resolved.anchor):
        raise ConfigError(key, "must not be the filesystem root")
    probe = resolved
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(key, f"{probe} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(key, f"{probe} is not writable")
    return resolved


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # the pid in the name tells a live writer's temp file from a dead one's (remove_stale_temps)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would make results unreadable to others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))
