"""What several benchmarks need: the project's Invoke configuration (the wiring's own loader), and a free
loopback port.

A benchmark runs as a plain script and depends on the product and itself, never on the tests.
"""

from __future__ import annotations

import socket
from pathlib import Path

from builder.wiring import project_config  # noqa: F401 - the benchmarks import it from here

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
