"""The downstream example, built FROM a tag published to the local registry, run on a host directory."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest

from builder import pipeline
from builder.publish import Destination
from builder.registry import Registry

from .conftest import ROOT
from .engine import rig  # noqa: F401 - fixture

pytestmark = pytest.mark.engine

# Its own repository in the local registry, so tests never move the main job's tags.
REPO = "base-gosu-test/published"
IMAGE = "base-gosu-test/heartbeat:latest"
HOST_UID = 4321


def wait_for(predicate, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_heartbeat_runs_as_volume_owner_and_stops_on_term(rig, tmp_path):
    registry = rig.cfg.local["registry_port"]
    dest = Destination(f"127.0.0.1:{registry}", REPO, local=True)  # the registry `invoke up` runs
    client = Registry(dest.registry)
    # The base's layers are already in this registry (its alpine repository): linked, not sent again.
    # (Those an earlier run already linked into REPO need neither.)
    base_layers = {d["digest"] for a in ("amd64", "arm64") for d in rig.built("alpine", a).image.layers[:-1]}
    unlinked = {d for d in base_layers if not client.blob_exists(REPO, d)}
    report = pipeline.publish(rig.request("alpine", "amd64,arm64"), rig.engine, client, dest, io.StringIO())
    assert report.noop or client.blobs_mounted >= len(unlinked), (client, unlinked)

    rig.engine.run("build", "--network", "none", "--pull", "--build-arg", f"BASE={dest.ref('alpine')}",
                   "--tag", IMAGE, str(ROOT / "examples" / "heartbeat"), timeout=600)
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, HOST_UID, HOST_UID)
    log = data / "heartbeat.log"
    cid = rig.engine.run("run", "--detach", "--network", "none", "--volume", f"{data}:/app", IMAGE).stdout.strip()
    try:
        assert wait_for(lambda: log.exists() and log.read_text().count("beat ") >= 2), \
            rig.engine.run("logs", cid, check=False).stderr
        start = time.monotonic()
        rig.engine.run("stop", "--time", "30", cid)
        took = time.monotonic() - start
        state = rig.engine.run("inspect", "--format", "{{.State.ExitCode}} {{.State.OOMKilled}}", cid).stdout.split()
    finally:
        rig.engine.run("rm", "--force", cid, check=False)

    lines = log.read_text().splitlines()
    assert lines[0] == f"started pid=1 uid={HOST_UID} gid={HOST_UID} user=ops", lines[0]
    # Exit 0 and the last line prove the app itself got SIGTERM and handled it: a
    # signal lost on the way would end in SIGKILL after 30 s, exit code 137.
    assert state == ["0", "false"], (state, lines[-3:])
    assert lines[-1].startswith("stopped on TERM after "), lines[-3:]
    owners = {(p.stat().st_uid, p.stat().st_gid) for p in data.iterdir()}
    assert owners == {(HOST_UID, HOST_UID)}
    print(f"docker stop returned in {took:.2f} s")
