"""Images are a pure function of their inputs: two fresh clones agree, and no emulator is needed to build."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
import time

import pytest

from builder import pipeline

from tests.conftest import ROOT
from tests.support.engine import emulation_disabled, rig  # noqa: F401 - fixture

pytestmark = pytest.mark.engine

# Runs inside a clone with that clone's own builder: assemble (no engine), print the digests.
SCRIPT = r"""
import io, json, sys
from pathlib import Path
root = Path.cwd()
sys.path.insert(0, str(root))
import builder
assert Path(builder.__file__).resolve().is_relative_to(root), builder.__file__
from invoke import Config
from builder import pipeline, wiring
cfg = Config(project_location=str(root))
cfg.load_project()
cfg.load_shell_env()
args = json.loads(sys.argv[1])
req = wiring.build_request(wiring.settings(cfg), **args)
built = pipeline.assemble_images(req, pipeline.plan(req, io.StringIO()), io.StringIO())
print(json.dumps({b.target.name: [b.image.digest, b.image.config_digest, b.labels["org.opencontainers.image.created"]]
                  for b in built}))
"""


def clone(tmp_path, name: str):
    dest = tmp_path / name
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(dest)], check=True)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    subprocess.run(["git", "-C", str(dest), "checkout", "--quiet", head.strip()], check=True)
    return dest


def assemble_in(root, args: dict, umask: int, tz: str, epoch: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    env.update({"TZ": tz, **({"SOURCE_DATE_EPOCH": epoch} if epoch else {})})
    p = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(args)], cwd=root, env=env, capture_output=True,
                       text=True, timeout=600, preexec_fn=lambda: os.umask(umask))
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout)


def test_two_fresh_clones_build_identical_digests(rig, tmp_path):
    args = dict(flavor="minideb,alpine", arch="amd64,arm64", **rig.gosu_overrides)
    first = assemble_in(clone(tmp_path, "a"), args, 0o022, "UTC")
    time.sleep(1.1)  # another second on the clock; the clones' files have other times too
    second_root = clone(tmp_path, "b")
    second = assemble_in(second_root, args, 0o077, "Pacific/Kiritimati")
    assert len(first) == 4 and first == second
    commit_time = int(subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%ct"], capture_output=True,
                                     text=True).stdout)
    later = assemble_in(second_root, {**args, "flavor": "alpine", "arch": "amd64"}, 0o022, "UTC",
                        epoch=str(commit_time + 86400))
    assert later["alpine-3.20-amd64"][0] != first["alpine-3.20-amd64"][0], "SOURCE_DATE_EPOCH is an input"
    assert later["alpine-3.20-amd64"][2] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(commit_time + 86400))


@pytest.mark.emulation_off
def test_arm64_builds_with_its_emulator_switched_off(rig, tmp_path):
    req = rig.request("minideb,ubuntu,alpine", "arm64")
    req = dataclasses.replace(req, store=tmp_path / "store", settings=dataclasses.replace(
        req.settings, repository=f"{req.settings.repository}-noemu"))
    with emulation_disabled("arm64"):
        built = pipeline.build(req, rig.engine, io.StringIO())
        ran = rig.engine.container(built[-1].tag, "true", options=["--platform", "linux/arm64"])
    try:
        assert ran.returncode != 0, "with the handler off, nothing arm64 can run: the build ran nothing"
        for b in built:
            info = rig.engine.inspect(b.tag)
            assert (info["Architecture"], info["Id"]) == ("arm64", b.image.config_digest)
        assert rig.engine.container(built[-1].tag, "uname", "-m", options=["--platform", "linux/arm64"]) \
            .stdout.split()[-1] == "aarch64"
    finally:
        for b in built:
            rig.engine.remove_image(b.tag)
