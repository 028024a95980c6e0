"""Shared setup for tests that need the engine: local registry, test mirror, built images."""

from __future__ import annotations

import dataclasses
import io
import sys
from pathlib import Path

import pytest
from invoke import Config

from builder import config, local, pipeline, testmirror
from builder.engine import Engine

from .conftest import ROOT, skip_or_fail

ARCHES = ("amd64", "arm64")


def project_config(runtime: Path | None = None) -> Config:
    """The project's invoke.yaml (plus `invoke -f RUNTIME`), as `invoke` in the project would load it."""
    cfg = Config(project_location=str(ROOT), runtime_path=str(runtime) if runtime else None)
    cfg.load_project()
    if runtime:
        cfg.load_runtime()
    cfg.load_shell_env()
    return cfg


def require_engine() -> Engine:
    engine = Engine()
    if not engine.available():
        skip_or_fail("no Docker engine answers `docker info`; run `invoke up` (tests marked engine need one)")
    return engine


class Rig:
    """Engine + seeded registry + test-signed gosu mirror, made once per session."""

    def __init__(self):
        self.engine = require_engine()
        self.cfg = project_config()
        log = io.StringIO()
        try:
            local.up(config.local_settings(self.cfg.local), self.engine, log)
            debian = config.fetch_options(self.cfg.gosu, source="debian", arch=",".join(ARCHES))
            self.mirror = testmirror.make(ROOT / ".cache" / "test-mirror", debian, log)
        except Exception as e:  # noqa: BLE001 - report setup output with the failure
            sys.stderr.write(log.getvalue())
            raise RuntimeError(f"engine test setup failed: {e}") from e
        self.gosu_overrides = dict(gosu_version=self.mirror.version, mirror=str(self.mirror.root),
                                   key=str(self.mirror.key_file), fingerprint=self.mirror.fingerprint)
        self._built: dict[tuple[str, str], object] = {}

    def request(self, flavor: str, arch: str, **settings):
        """A build request for the test mirror's gosu; `settings` override ImageSettings fields."""
        req = config.build_request(self.cfg, flavor=flavor, arch=arch, **self.gosu_overrides)
        return dataclasses.replace(req, settings=dataclasses.replace(req.settings, **settings)) if settings else req

    def built(self, flavor: str, arch: str, **settings):
        """Built once per session; a settings variant needs its own `repository` so tags do not collide."""
        key = (flavor, arch, tuple(sorted(settings.items())))
        if key not in self._built:
            [self._built[key]] = pipeline.build(self.request(flavor, arch, **settings), self.engine,
                                               log=io.StringIO())
        return self._built[key]


@pytest.fixture(scope="session")
def rig():
    return Rig()
