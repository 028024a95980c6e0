"""Shared setup for tests that need the engine: local registry, test mirror, built images."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

from builder import pipeline, wiring
from builder.wiring import project_config  # noqa: F401 - the tests import it from here with the fixtures
from builder.core import emulation
from builder.local import setup as local, seed, tools
from builder.publish import signing
from builder.gosu import testmirror
from builder.image.assembly import layer
from builder.core.engine import Engine
from builder.core.emulation import native_arch

from tests.conftest import ROOT, skip_or_fail
from tests.support.binfmt import handlers_held

ARCHES = ("amd64", "arm64")
UNAME = {"amd64": "x86_64", "arm64": "aarch64"}



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
        self.settings = wiring.settings(self.cfg)   # parsed once, as a task's entry does; frozen, so shared
        s, log = self.settings, io.StringIO()
        try:
            local.up(s.local, self.engine, log)
            seed.seed(s.local, s.images, log)
            debian = wiring.fetch_options(s.gosu, source="debian", arch=",".join(ARCHES))
            self.mirror = testmirror.make(ROOT / ".cache" / "test-mirror", debian, log)
            self.cosign = tools.ensure(s.tools, "cosign", native_arch(), log)
            signing.make_local_key(self.cosign, s.signing.local_key, log)
        except Exception as e:  # noqa: BLE001 - report setup output with the failure
            sys.stderr.write(log.getvalue())
            raise RuntimeError(f"engine test setup failed: {e}") from e
        self.gosu_overrides = dict(gosu_version=self.mirror.version, mirror=str(self.mirror.root),
                                   key=str(self.mirror.key_file), fingerprint=self.mirror.fingerprint)
        self._built: dict[tuple[str, str], object] = {}

    def request(self, flavor: str, arch: str, **settings):
        """A build request for the test mirror's gosu; `settings` override ImageSettings fields."""
        req = wiring.build_request(self.settings, flavor=flavor, arch=arch, **self.gosu_overrides)
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


@contextlib.contextmanager
def emulation_disabled(arch: str):
    """Switch the qemu binfmt handler for `arch` off, for as short a time as the block takes."""
    entry = emulation.handler(arch)
    if native_arch() == arch or not entry.exists() or not os.access(entry, os.W_OK):
        skip_or_fail(f"needs a writable binfmt entry {entry} to break {arch} emulation")
    with handlers_held(exclusive=True):
        entry.write_text("0")
        try:
            yield
        finally:
            entry.write_text("1")


def exported_tree(engine: Engine, image: str, wanted) -> dict[str, tuple]:
    """`docker export` of a container made (not run) from `image`: path -> layer.listing() tuple, for wanted paths."""
    cid = engine.run("create", image, "true").stdout.strip()
    try:
        with tempfile.TemporaryDirectory(prefix="export-") as tmp:
            out = Path(tmp) / "fs.tar"
            engine.run("export", "--output", str(out), cid, timeout=300)
            keep = io.BytesIO()
            with tarfile.open(out) as src, tarfile.open(fileobj=keep, mode="w", format=tarfile.GNU_FORMAT) as dst:
                for ti in src:
                    name = ti.name.strip("/").removeprefix("./")
                    if wanted(name):
                        ti.name = name
                        dst.addfile(ti, src.extractfile(ti) if ti.isreg() else None)
            return layer.listing(keep.getvalue())
    finally:
        engine.run("rm", "--force", cid, check=False)


def file_text(engine: Engine, image: str, path: str) -> str:
    cid = engine.run("create", image, "true").stdout.strip()
    try:
        p = subprocess.run(["docker", "cp", f"{cid}:{path}", "-"], capture_output=True)
        if p.returncode != 0:
            return ""
        with tarfile.open(fileobj=io.BytesIO(p.stdout)) as t:
            return t.extractfile(t.getmembers()[0]).read().decode()
    finally:
        engine.run("rm", "--force", cid, check=False)
