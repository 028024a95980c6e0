"""What an app or security team runs never reports on bytes nobody checked: through a proxy that alters what a
registry serves (one letter of every blob, config and referrer documents included; a space in every manifest
fetched by digest), verify, sbom, vex, reproduce and a publish's tag reads fail, naming the registry and digest.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid

import pytest

from builder import shipping, wiring
from builder.shipping import PublishOptions
from builder.core.registry import DigestMismatch, Registry
from builder.publish import tags
from builder.config.settings import Destination
from tests.conftest import ROOT
from tests.support.engine import project_config, rig  # noqa: F401 - fixture
from tests.support.registries import Proxy, one_letter_changed, space_after_brace

pytestmark = pytest.mark.engine

REPO = f"{project_config().images['repository']}-tampered-{uuid.uuid4().hex[:8]}"


def blobs_one_letter(path: str, body: bytes) -> bytes:
    return one_letter_changed(path, body) if "/blobs/" in path else body


def manifests_by_digest_spaced(path: str, body: bytes) -> bytes:
    return space_after_brace(path, body) if "/manifests/sha256:" in path else body


@pytest.fixture(scope="module")
def published(rig):
    """alpine amd64, scanned (its VEX) and signed, in this module's own repository of the local registry."""
    dest = Destination(f"127.0.0.1:{rig.cfg.local['registry_port']}", REPO, local=True)
    client = Registry(dest.registry)
    shipping.publish(rig.request("alpine", "amd64"), rig.engine, client, dest, io.StringIO(),
                     PublishOptions(signer=wiring.signer(rig.settings, dest)))
    return dest


def invoke(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_")}
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


TASKS = {
    "verify": lambda ref: ("verify", ref, "--key", str(ROOT / ".cache" / "signing" / "local.pub")),
    "sbom": lambda ref: ("sbom", ref, "--platform", "linux/amd64"),
    "vex": lambda ref: ("vex", ref, "--platform", "linux/amd64"),
    "reproduce": lambda ref: ("reproduce", ref),
}


@pytest.mark.parametrize("tamper", [blobs_one_letter, manifests_by_digest_spaced],
                         ids=["blob-one-letter", "manifest-by-digest-whitespace"])
@pytest.mark.parametrize("task", list(TASKS))
def test_a_consumer_task_fails_naming_the_registry_and_digest(published, task, tamper):
    proxy = Proxy(published.registry, tamper=tamper)
    try:
        done = invoke(*TASKS[task](f"{proxy.host}/{REPO}:alpine"))
    finally:
        proxy.close()
    out = done.stdout + done.stderr
    assert done.returncode != 0, out[-3000:]
    assert f"registry {proxy.host} served " in out and " as other bytes (sha256:" in out, out[-3000:]
    assert "checks hold" not in out


@pytest.mark.parametrize("tamper", [blobs_one_letter, manifests_by_digest_spaced],
                         ids=["blob-one-letter", "manifest-by-digest-whitespace"])
def test_a_publishs_tag_read_fails_naming_the_registry_and_digest(published, tamper):
    proxy = Proxy(published.registry, tamper=tamper)
    try:
        with pytest.raises(DigestMismatch, match=rf"registry {proxy.host} served .*{REPO}@sha256:"):
            tags.read_tag(Registry(proxy.host), REPO, "alpine")
    finally:
        proxy.close()
