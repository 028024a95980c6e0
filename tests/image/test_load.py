"""Assembly on a base the engine has never seen, from another registry: loaded whole, image ID = config digest."""

from __future__ import annotations

import gzip
import io
import json
import os
import signal
import tarfile

import pytest

from builder.local import setup as local
from builder.image.assembly import append, load
from builder.image.assembly.accounts import Account
from builder.core.registry import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, Registry, sha256_digest
from builder.image.assembly.store import Store

from tests.support.engine import rig  # noqa: F401 - fixture
from tests.support.registries import free_port

pytestmark = pytest.mark.engine

EPOCH = 1_764_000_000


def base_layer() -> bytes:
    """A minimal busybox-style root, plus random bytes so no engine has this layer yet."""
    buf = io.BytesIO()
    files = {"etc/passwd": b"root:x:0:0:root:/root:/bin/sh\n", "etc/group": b"root:x:0:root\n",
             "etc/shadow": b"root:*::0:::::\n", "bin/busybox": b"not really", "random": os.urandom(32)}
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for d in ("bin", "etc", "home", "usr", "usr/local", "usr/local/bin"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            t.addfile(ti)
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o640 if name == "etc/shadow" else 0o644
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def test_a_base_the_engine_lacks_is_loaded_whole(rig, tmp_path):
    host = f"127.0.0.1:{free_port()}"
    pid = local.start_registry(tmp_path / "registry", host)
    tag = "base-gosu-test/fresh-base:amd64"
    try:
        client = Registry(host, None, retries=1, backoff=0.05)
        tar = base_layer()
        blob = gzip.compress(tar)
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Env": ["PATH=/bin"]},
                             "rootfs": {"type": "layers", "diff_ids": [sha256_digest(tar)]}}).encode()
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": {"mediaType": OCI_CONFIG, "digest": client.upload_blob("base", config),
                                          "size": len(config)},
                               "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": client.upload_blob("base", blob),
                                           "size": len(blob)}]}).encode()
        digest = client.put_manifest("base", sha256_digest(manifest), manifest, OCI_MANIFEST)
        recipe = append.Recipe(append.BaseRef(host, "base", digest), b"gosu",
                               append.Entrypoint.of({"entrypoint.sh": b"#!/bin/sh\n"}),
                               Account("ops", 10001, 10001), EPOCH, {"x": "y"})
        store = Store(tmp_path / "store")
        image = append.assemble(recipe, store, client)
        assert image.dialect == "busybox" and image.layers[0]["digest"] == sha256_digest(blob)
        assert load.load(rig.engine, store, lambda h: client, [(tag, image)]) == 1
        info = rig.engine.inspect(tag)
        assert info["Id"] == image.config_digest
        assert info["Config"]["Labels"] == {"x": "y"} and info["Config"]["WorkingDir"] == "/app"
        assert load.load(rig.engine, store, lambda h: client, [(tag, image)]) == 0, "already there: nothing to do"
    finally:
        rig.engine.remove_image(tag)
        os.kill(pid, signal.SIGTERM)
