"""`invoke reproduce`: a published image checks out against its inputs; a tampered copy is caught and named."""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import subprocess
import sys
import tarfile

import pytest

from builder.local import setup as local
from builder import shipping
from builder.shipping import PublishOptions
from builder.publish import push as pub
from builder.image.assembly import layer
from builder.config.settings import Destination
from builder.core.registry import OCI_MANIFEST, Registry, sha256_digest

from tests.conftest import ROOT
from tests.support.engine import ARCHES, rig  # noqa: F401 - fixture
from tests.support.registries import free_port

pytestmark = pytest.mark.engine

REPO = "org/base-gosu"


@pytest.fixture
def registry(tmp_path):
    host = f"127.0.0.1:{free_port()}"
    pid = local.start_registry(tmp_path / "registry", host)
    yield Registry(host, None, retries=1, backoff=0.05)
    os.kill(pid, signal.SIGTERM)


def reproduce(ref: str) -> subprocess.CompletedProcess:
    mirror_config = ROOT / ".cache" / "test-mirror" / "invoke.yaml"
    return subprocess.run([sys.executable, "-m", "invoke", "-f", str(mirror_config), "reproduce", ref], cwd=ROOT,
                           capture_output=True, text=True, timeout=600)


def repush(client: Registry, digest: str, tag: str, edit_layer=None, edit_config=None) -> None:
    """A copy of a published image with its own layer and/or config changed, pushed under `tag`."""
    manifest = json.loads(client.get_manifest(REPO, digest)[0])
    config = json.loads(client.get_blob(REPO, manifest["config"]["digest"]))
    if edit_layer:
        tar = edit_layer(gzip.decompress(client.get_blob(REPO, manifest["layers"][-1]["digest"])))
        blob = layer.gzip_bytes(tar)
        manifest["layers"][-1].update(digest=client.upload_blob(REPO, blob), size=len(blob))
        config["rootfs"]["diff_ids"][-1] = sha256_digest(tar)
    if edit_config:
        edit_config(config)
    raw = json.dumps(config).encode()
    manifest["config"].update(digest=client.upload_blob(REPO, raw), size=len(raw))
    client.put_manifest(REPO, tag, json.dumps(manifest).encode(), OCI_MANIFEST)


def file_edited(path: str, edit):
    """A layer edit for repush: the layer rewritten with `edit(bytes)` applied to the one file at `path`."""
    def rewrite(tar: bytes) -> bytes:
        src, out = tarfile.open(fileobj=io.BytesIO(tar)), io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as dst:
            for ti in src:
                data = src.extractfile(ti).read() if ti.isreg() else None
                if ti.name == path:
                    data = edit(data)
                    ti.size = len(data)
                dst.addfile(ti, io.BytesIO(data) if data is not None else None)
        return out.getvalue()
    return rewrite


one_file_changed = file_edited("usr/local/bin/entrypoint", lambda data: data + b"# one more line\n")


def test_reproduce_says_identical_then_names_what_was_tampered(rig, registry):
    built = [rig.built("alpine", a) for a in ARCHES]
    dest = Destination(registry.host, REPO)
    children = [pub.push_child(registry, dest, b, io.StringIO())[0] for b in built]
    shipping.assemble(children, registry, dest, [("alpine", "3.20", a) for a in ARCHES], io.StringIO(),
                      PublishOptions(allow_trial=True, allow_eol=True))

    ok = reproduce(f"{registry.host}/{REPO}:alpine")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count("identical: ") == 2, ok.stdout

    amd64 = next(c for c in children if c.arch == "amd64")
    repush(registry, amd64.digest, "tampered", edit_layer=one_file_changed)
    bad = reproduce(f"{registry.host}/{REPO}:tampered")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "differs: " in bad.stdout
    changed = [l for l in bad.stdout.splitlines() if l.strip().startswith("file /")]
    assert len(changed) == 1 and "file /usr/local/bin/entrypoint: size" in changed[0], bad.stdout
    assert "config rootfs.diff_ids" in bad.stdout

    repush(registry, amd64.digest, "unknown-revision", edit_config=lambda c: c["config"]["Labels"].update(
        {"org.opencontainers.image.revision": "0123456789abcdef0123456789abcdef01234567"}))
    refused = reproduce(f"{registry.host}/{REPO}:unknown-revision")
    assert refused.returncode == 2
    assert "revision 0123456789abcdef0123456789abcdef01234567 is not in the checkout" in refused.stderr


library_changed = file_edited("usr/local/lib/base-gosu/libnss_wrapper.so",
                              lambda data: data[:-1] + bytes([data[-1] ^ 1]))


def test_reproduce_fetches_the_nss_wrapper_its_labels_pin(rig, registry):
    built = rig.built("minideb", "amd64")
    assert built.labels["org.base-gosu.nss-wrapper.version"]
    child = pub.push_child(registry, Destination(registry.host, REPO), built, io.StringIO())[0]
    ok = reproduce(f"{registry.host}/{REPO}@{child.digest}")
    assert ok.returncode == 0 and ok.stdout.count("identical: ") == 1, ok.stdout + ok.stderr
    repush(registry, child.digest, "other-library", edit_layer=library_changed)
    bad = reproduce(f"{registry.host}/{REPO}:other-library")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    changed = [l for l in bad.stdout.splitlines() if l.strip().startswith("file /")]
    assert len(changed) == 1 and "file /usr/local/lib/base-gosu/libnss_wrapper.so: content" in changed[0], bad.stdout
