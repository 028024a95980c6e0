"""What several benchmarks need: the project's Invoke configuration, and a free loopback port.

Kept here rather than imported from tests/support/: a benchmark runs as a
plain script and depends on the product and itself, never on the tests.
"""

from __future__ import annotations

import socket
from pathlib import Path

from invoke import Config

ROOT = Path(__file__).resolve().parent.parent


def project_config(runtime: Path | None = None) -> Config:
    """The project's invoke.yaml (plus `invoke -f RUNTIME`), as `invoke` in the project would load it."""
    cfg = Config(project_location=str(ROOT), runtime_path=str(runtime) if runtime else None)
    cfg.load_project()
    if runtime:
        cfg.load_runtime()
    cfg.load_shell_env()
    return cfg


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
