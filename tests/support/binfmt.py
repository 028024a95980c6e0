"""The host's qemu handlers are one switch for every process: a test that turns one off holds this lock alone.

The suite runs in two workers (pyproject.toml). The engine lane switches arm64's handler off for a moment
(tests/support/engine.py: emulation_disabled), while the other lane may be bootstrapping a foreign tree whose
tools run under qemu, or checking that `ensure` turns handlers on. Those hold the lock shared.
"""

from __future__ import annotations

import contextlib
import fcntl
import tempfile
from pathlib import Path

LOCK = Path(tempfile.gettempdir()) / "base-gosu-tests-binfmt.lock"


@contextlib.contextmanager
def handlers_held(exclusive: bool = False):
    with open(LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
