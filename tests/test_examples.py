"""The downstream example, built FROM a tag published to the local registry, run on a host directory."""

from __future__ import annotations

import io
import re
import json
import os
import subprocess
import time
import uuid

import pytest

from builder import shipping, wiring
from builder.shipping import PublishOptions
from builder.core import oci
from builder.config.settings import Destination
from builder.core.registry import OCI_INDEX, Registry

from tests.conftest import ROOT
from tests.support.engine import project_config, rig  # noqa: F401 - fixture

pytestmark = pytest.mark.engine

# Its own repository in the local registry, new for each session, so tests never move the main job's tags (nor
# each other's), and the first publish into it always has base layers to link.
REPO = f"{project_config().images['repository']}-example-{uuid.uuid4().hex[:8]}"
IMAGE = "base-gosu-test/heartbeat:latest"
HOST_UID = 4321


def wait_for(predicate, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@pytest.fixture(scope="module")
def published(rig):
    """The example's base, alpine for amd64 and arm64, published signed into this session's own repository."""
    dest = Destination(f"127.0.0.1:{rig.cfg.local['registry_port']}", REPO, local=True)  # `invoke up`'s registry
    client = Registry(dest.registry)
    base_layers = {d["digest"] for a in ("amd64", "arm64") for d in rig.built("alpine", a).image.layers[:-1]}
    unlinked = {d for d in base_layers if not client.blob_exists(REPO, d)}
    # Signed with the local key pair, as `invoke publish` to the local registry does.
    report = shipping.publish(rig.request("alpine", "amd64,arm64"), rig.engine, client, dest, io.StringIO(),
                              PublishOptions(signer=wiring.signer(rig.settings, dest)))
    return dest, client, report, unlinked


def moved_to_an_unsigned_index(client: Registry) -> str:
    """The tag `moved`: the published index with one annotation more, so a digest nobody signed."""
    index = json.loads(client.get_manifest(REPO, "alpine")[0])
    index.setdefault("annotations", {})["org.opencontainers.image.ref.name"] = "moved-unsigned"
    client.put_manifest(REPO, "moved", oci.canonical(index), OCI_INDEX)
    return "moved"


def test_the_bases_layers_are_linked_from_its_repository_not_sent_again(published):
    _, client, report, unlinked = published
    assert unlinked and not report.noop, "a new repository starts without the base's layers"
    assert client.blobs_mounted >= len(unlinked), (client, unlinked)


def test_heartbeat_runs_as_volume_owner_and_stops_on_term(rig, published, tmp_path):
    dest, client, _, _ = published

    # The app's build verifies its base, then builds FROM it by the digest it verified.
    env = {**os.environ, "INVOKE": str(ROOT / ".venv" / "bin" / "invoke")}
    build = subprocess.run(["sh", "examples/heartbeat/build.sh", dest.ref("alpine"), IMAGE, "--network", "none"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    index_digest = client.get_manifest(REPO, "alpine")[2]
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert f"verify {dest.ref('alpine')} -> {index_digest}" in build.stdout and "9/9 checks hold" in build.stdout
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


def test_heartbeat_build_refuses_a_base_whose_tag_moved_to_an_unsigned_image(rig, published):
    dest, client, _, _ = published
    moved_to_an_unsigned_index(client)
    env = {**os.environ, "INVOKE": str(ROOT / ".venv" / "bin" / "invoke")}
    build = subprocess.run(["sh", "examples/heartbeat/build.sh", dest.ref("moved"), "base-gosu-test/never:built"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert build.returncode == 1, build.stdout + build.stderr
    assert "signature                    index" in build.stderr and "FAILED: unsigned: no signature" in build.stderr
    assert f"build.sh: {dest.ref('moved')} did not verify; not building on it" in build.stderr
    assert rig.engine.run("image", "inspect", "base-gosu-test/never:built", check=False).returncode != 0


def verify_block() -> str:
    text = (ROOT / "docs" / "verifying.md").read_text()
    return re.search(r"<!-- verify-test -->\n```sh\n(.*?)```", text, re.S).group(1)


def test_readme_verify_commands_hold_on_a_signed_base_and_fail_on_a_moved_tag(published):
    """docs/verifying.md's "Verify before you build" block, as written, against the base the fixture published."""
    dest, client, _, _ = published
    host = dest.registry
    block = verify_block()
    first, rest = block.split("\n", 1)
    assert first == "REF=127.0.0.1:5000/org/base-gosu:alpine KEY=.cache/signing/local.pub"
    tools = ROOT / ".cache" / "tools" / "bin"
    env = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}"}

    def run(tag: str) -> subprocess.CompletedProcess:
        script = f"REF={host}/{REPO}:{tag} KEY=.cache/signing/local.pub\n" + \
            rest.replace("./run verify", f"{ROOT / '.venv' / 'bin' / 'invoke'} verify")
        return subprocess.run(["sh", "-eu", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=600)

    ok = run("alpine")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "9/9 checks hold" in ok.stdout and ok.stdout.count(": signed, attested, gosu sha256 ") == 2, ok.stdout
    moved = run(moved_to_an_unsigned_index(client))
    assert moved.returncode != 0 and "FAILED: unsigned" in moved.stdout, moved.stdout + moved.stderr
