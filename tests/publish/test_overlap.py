"""Publishers that overlap: whatever the interleaving, a flavor's floating tags end on one whole index."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from builder.core.registry import OCI_INDEX
from builder.publish import settle, signing, tags
from builder.publish.push import Child, PublishError
from builder.config.settings import Destination
from tests.conftest import ROOT
from tests.support.engine import rig  # noqa: F401 - fixture
from tests.support.registries import AuthRegistry, Proxy

pytestmark = pytest.mark.engine

FLOATING = ("alpine", "alpine-3.20")


def index(created: str) -> settle.Index:
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [],
                       "annotations": {settle.CREATED: created}}, sort_keys=True).encode()
    return settle.Index(f"sha256:{hashlib.sha256(body).hexdigest()}", body, OCI_INDEX)


@pytest.fixture
def registry(tmp_path):
    reg = AuthRegistry(tmp_path / "registry")
    yield reg
    reg.stop()


def test_interleaved_moves_settle_on_the_newer_index_and_the_older_run_loses(registry):
    client, dest = registry.client(), Destination(registry.host, "org/base-gosu")
    older, newer = index("2026-01-01T00:00:00Z"), index("2026-02-01T00:00:00Z")
    for i in (older, newer):
        client.put_manifest(dest.repository, i.digest, i.body, OCI_INDEX)
    # The interleaving a registry without compare-and-swap allows: each run moved one tag last.
    client.put_manifest(dest.repository, FLOATING[0], older.body, OCI_INDEX)
    client.put_manifest(dest.repository, FLOATING[1], newer.body, OCI_INDEX)
    log = io.StringIO()
    assert settle.settle(client, dest, FLOATING, older, log).digest == newer.digest
    assert "moved again (another publish moved it at the same time)" in log.getvalue()
    assert settle.settle(client, dest, FLOATING, newer, io.StringIO()).digest == newer.digest
    assert {settle.read(client, dest.repository, t).digest for t in FLOATING} == {newer.digest}


def publish(reg: AuthRegistry, host: str, key, store, *source: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "REGISTRY_USERNAME": reg.user, "REGISTRY_PASSWORD": reg.password, "COSIGN_PASSWORD": "",
           "INVOKE_IMAGES_STORE": str(store)}
    return subprocess.run([".venv/bin/invoke", "publish", "--flavor", "alpine", "--arch", "amd64", "--registry",
                           host, "--allow-trial", "--allow-eol", "--sign-key", str(key), *source], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)


def test_two_publishers_of_different_gosu_at_once_end_on_one_whole_index(rig, registry, tmp_path):
    subprocess.run([str(rig.cosign), "generate-key-pair", "--output-key-prefix", str(tmp_path / "ci")], check=True,
                   env={**os.environ, "COSIGN_PASSWORD": ""}, capture_output=True, timeout=60)
    key, client = tmp_path / "ci.key", registry.client()
    runs = {"trixie": ("--source", "debian"), "bookworm": ("--source", "debian", "--suite", "bookworm")}
    # Tag moves (PUT of a manifest by tag) held back 1 s each: the two runs' moves overlap, as over a slow
    # network; everything else goes straight through.
    proxy = Proxy(registry.host, slow=[("PUT", r"/manifests/alpine", 1.0)])
    seen = []
    for round_ in range(3):
        with ThreadPoolExecutor(2) as pool:
            done = dict(zip(runs, pool.map(
                lambda s: publish(registry, proxy.host, key, tmp_path / f"store-{s[0]}", *s[1]), runs.items())))
        final = {t: settle.read(client, "org/base-gosu", t) for t in FLOATING}
        digests = {i.digest for i in final.values()}
        assert len(digests) == 1, (round_, {t: i.digest for t, i in final.items()})
        winner = digests.pop()
        # The index they name is whole: every child there, signed and attested, and the index signed.
        doc = json.loads(final[FLOATING[0]].body)
        present = client.list_tags("org/base-gosu")
        assert signing.sig_tag(winner) in present
        for child in doc["manifests"]:
            assert client.get_manifest("org/base-gosu", child["digest"]) is not None
            assert {signing.sig_tag(child["digest"]), signing.sig_tag(child["digest"], "att")} <= present
        outcome = {}
        for name, p in done.items():
            # The index this run moved tags to as its own (not "moved again" to another run's).
            own = set(re.findall(r"-> (sha256:[0-9a-f]{12}): (?:created|moved)$", p.stdout, re.M))
            if p.returncode != 0:
                assert "another publish ran at the same time and won" in p.stderr, p.stdout + p.stderr
                assert winner[:19] not in own, (name, own, winner)
            outcome[name] = (p.returncode, "moved again" in p.stdout, sorted(own))
        seen.append((round_, winner[:19], outcome))
        assert any(rc == 0 for rc, _, _ in outcome.values()), outcome
    proxy.close()
    print("\n".join(f"round {r}: tags on {w}; " + ", ".join(f"{n}: exit {rc}{', moved again' if again else ''}"
                                                          for n, (rc, again, _) in o.items()) for r, w, o in seen))


def test_a_signature_deleted_underneath_moves_no_tag(registry):
    client, dest = registry.client(), Destination(registry.host, "org/base-gosu")
    child = index("2026-01-01T00:00:00Z")
    client.put_manifest(dest.repository, child.digest, child.body, OCI_INDEX)
    record = Child("alpine", "3.20", "amd64", {"os": "linux", "architecture": "amd64"}, child.digest,
                   len(child.body), "sha256:" + "0" * 64, "1.17", "0" * 40, "2026-01-01T00:00:00Z")
    lay = tags.Layout("alpine", (record,), index("2026-01-02T00:00:00Z").body, ())
    missing = tags.gone(client, dest, [lay], signed=True)
    assert missing == [f"the signature of {dest.ref(child.digest)} (alpine amd64)",
                       f"the attestations of {dest.ref(child.digest)} (alpine amd64)",
                       f"the signature of index {dest.ref(lay.index_digest)} (alpine)"]
    with pytest.raises(PublishError, match="deleted from the registry .* No tag was moved"):
        tags.apply(client, dest, [tags.Layout("alpine", lay.children, lay.index,
                                              (tags.TagMove("alpine", "create", tags.TagState("alpine")),))],
                   io.StringIO(), seal=lambda digest: None)
    assert settle.read(client, dest.repository, "alpine") is None
