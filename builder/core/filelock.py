"""One process at a time on this machine for a named piece of shared state: an flock on a file that stays.

A lock held by a process that dies is released by the kernel with it, so nothing is ever left locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
from pathlib import Path
from typing import Iterator

from builder.core.host import say


def path_for(directory: Path, name: str) -> Path:
    """The lock file for `name` (any text, e.g. a registry reference) under `directory`."""
    return directory / "locks" / f"{hashlib.sha256(name.encode()).hexdigest()[:16]}.lock"


@contextlib.contextmanager
def held(path: Path, log, waiting: str) -> Iterator[None]:
    """Hold `path`'s lock; say `waiting` once if another process holds it now."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(log, waiting)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
