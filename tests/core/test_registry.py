"""The registry client checks every read addressed by digest itself: a manifest or blob that comes back as
other bytes is refused naming the registry and the digest, whoever the caller. Against Debian's
docker-registry on loopback, through a proxy that alters what it serves."""

from __future__ import annotations

import json

import pytest

from builder.core.registry import OCI_MANIFEST, DigestMismatch, RegistryError, sha256_digest
from tests.support.registries import AuthRegistry, Proxy, one_letter_changed, space_after_brace

CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}},
                    separators=(",", ":")).encode()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    reg = AuthRegistry(tmp_path_factory.mktemp("registry"))
    client = reg.client()
    client.upload_blob("t/read", CONFIG)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [], "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256_digest(CONFIG),
        "size": len(CONFIG)}}, separators=(",", ":")).encode()
    client.put_manifest("t/read", "v1", manifest, OCI_MANIFEST)
    yield reg, sha256_digest(manifest)
    reg.stop()


def through(reg, tamper) -> Proxy:
    return Proxy(reg.host, tamper=tamper)


@pytest.mark.parametrize("tamper, read", [
    (one_letter_changed, "blob"),
    (space_after_brace, "manifest-by-digest"),
], ids=["blob-one-letter", "manifest-by-digest-whitespace"])
def test_other_bytes_for_a_digest_are_refused_naming_the_registry_and_digest(served, tamper, read):
    reg, manifest = served
    proxy = through(reg, tamper)
    try:
        client = reg.client(host=proxy.host)
        digest = sha256_digest(CONFIG) if read == "blob" else manifest
        with pytest.raises(DigestMismatch, match=rf"registry {proxy.host} served .* t/read@{digest} as other bytes"):
            client.get_blob("t/read", digest) if read == "blob" else client.get_manifest("t/read", digest)
    finally:
        proxy.close()


def test_untouched_reads_pass_and_a_tag_read_reports_the_digest_of_what_came(served):
    reg, manifest = served
    client = reg.client()
    assert client.get_blob("t/read", sha256_digest(CONFIG)) == CONFIG
    assert client.get_manifest("t/read", manifest)[2] == manifest
    assert client.get_manifest("t/read", "v1")[2] == manifest
    proxy = through(reg, space_after_brace)
    try:
        # A tag names no bytes: the digest is of what arrived, so every later read by digest is held to it.
        assert reg.client(host=proxy.host).get_manifest("t/read", "v1")[2] != manifest
    finally:
        proxy.close()


def test_a_reference_that_is_not_a_sha256_digest_is_not_read(served):
    reg, _ = served
    with pytest.raises(RegistryError, match="not a sha256 digest"):
        reg.client().get_blob("t/read", "md5:" + "0" * 32)
