"""Images as OCI artifacts: push an engine image by digest, assemble multi-arch indexes.

Pushing blobs and manifests ourselves (rather than `docker push` of a tag)
means per-arch images go up by digest without touching any tag, and the
index that moves a tag is written only once every child is in place.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .engine import Engine
from .registry import OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST, Registry, sha256_digest


@dataclass(frozen=True)
class Pushed:
    repo: str
    digest: str
    size: int
    platform: dict
    labels: dict

    def descriptor(self) -> dict:
        return {"mediaType": OCI_MANIFEST, "digest": self.digest, "size": self.size, "platform": self.platform}


def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _gzip(data: bytes) -> bytes:
    # mtime=0 and a fixed level make the same layer compress to the same digest
    # every time, so a republish of unchanged content uploads nothing.
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def platform_of(config: dict) -> dict:
    p = {"architecture": config["architecture"], "os": config["os"]}
    if config.get("variant"):
        p["variant"] = config["variant"]
    return p


def push_image(engine: Engine, image: str, registry: Registry, repo: str, mount_from: tuple[str, ...] = ()) -> Pushed:
    """Upload an engine image's layers, config and manifest; no tag is created or moved.

    `mount_from`: repositories in the same registry that may already hold
    some layers (the base image's), linked instead of uploaded.
    """
    with tempfile.TemporaryDirectory(prefix="oci-") as tmp:
        with tarfile.open(engine.save(image, Path(tmp) / "image.tar")) as tar:
            [entry] = json.load(tar.extractfile("manifest.json"))
            config_bytes = tar.extractfile(entry["Config"]).read()
            layers = []
            for name in entry["Layers"]:
                blob = _gzip(tar.extractfile(name).read())
                layers.append({"mediaType": OCI_LAYER_GZIP, "digest": registry.upload_blob(repo, blob, mount_from=mount_from),
                               "size": len(blob)})
    config = json.loads(config_bytes)
    manifest = canonical({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": registry.upload_blob(repo, config_bytes),
                   "size": len(config_bytes)},
        "layers": layers,
    })
    digest = registry.put_manifest(repo, sha256_digest(manifest), manifest, OCI_MANIFEST)
    return Pushed(repo, digest, len(manifest), platform_of(config), config.get("config", {}).get("Labels") or {})


def index_body(children: list[Pushed], annotations: dict | None = None) -> bytes:
    body = {"schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [c.descriptor() for c in sorted(children, key=lambda c: json.dumps(c.platform, sort_keys=True))]}
    if annotations:
        body["annotations"] = annotations
    return canonical(body)


def push_index(registry: Registry, repo: str, tags: list[str], children: list[Pushed],
               annotations: dict | None = None) -> str:
    """Write the index by digest, then point each tag at it (each tag move is one atomic PUT)."""
    body = index_body(children, annotations)
    digest = registry.put_manifest(repo, sha256_digest(body), body, OCI_INDEX)
    for tag in tags:
        registry.put_manifest(repo, tag, body, OCI_INDEX)
    return digest


def read_index(registry: Registry, repo: str, ref: str) -> tuple[dict, str] | None:
    got = registry.get_manifest(repo, ref)
    if got is None:
        return None
    body, _, digest = got
    return json.loads(body), digest


def child_config(registry: Registry, repo: str, manifest_digest: str) -> dict:
    got = registry.get_manifest(repo, manifest_digest)
    if got is None:
        raise KeyError(manifest_digest)
    manifest = json.loads(got[0])
    return json.loads(registry.get_blob(repo, manifest["config"]["digest"]))
