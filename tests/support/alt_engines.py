"""Engines besides the main docker for the tests: podman, rootless podman, a userns-remapped dockerd.

Each is set up on first use (installing podman and uidmap through the project's
own apt step, as on a fresh CI machine), gets the rig's images copied in once,
and is torn down at the end of the session (the second dockerd is stopped).
The `alts` fixture lives in conftest.py: one instance for the whole session,
whichever modules use it (a fixture imported into two modules is two).
"""

from __future__ import annotations

import dataclasses
import io
import os
import sys
from contextlib import ExitStack

from builder import pipeline
from builder.smoke import engines
from builder.core.engine import Engine
from builder.smoke.checks.kit import Subject

from tests.conftest import skip_or_fail

ALT_KINDS = ("podman", "podman-rootless", "docker-userns")


class Alts:
    def __init__(self, rig):
        self.rig = rig
        self.settings = rig.settings.engine
        self.stack = ExitStack()
        self.engines: dict[str, Engine] = {}
        self.loaded: set[tuple[str, str]] = set()

    def engine(self, kind: str) -> Engine:
        if kind == "docker":
            return self.rig.engine
        if kind not in self.engines:
            if os.geteuid() != 0:
                skip_or_fail(f"setting up {kind} needs root (packages, a test user, a second dockerd)")
            log = io.StringIO()
            try:
                self.engines[kind] = self.stack.enter_context(
                    engines.opened(dataclasses.replace(self.settings, kind=kind), log))
            finally:
                sys.stderr.write(log.getvalue())
        return self.engines[kind]

    def subject(self, kind: str, flavor: str, arch: str = "amd64") -> tuple[Engine, Subject]:
        engine = self.engine(kind)
        built = self.rig.built(flavor, arch)
        if (kind, built.tag) not in self.loaded:
            engines.copy_image(self.rig.engine, engine, built.tag)
            self.loaded.add((kind, built.tag))
        return engine, pipeline.subject_of(built)

    def close(self):
        self.stack.close()

