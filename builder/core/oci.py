"""Images as OCI artifacts: push assembled (or engine) images by digest, assemble multi-arch indexes.

Pushing blobs and manifests ourselves (rather than `docker push` of a tag)
means per-arch images go up by digest without touching any tag, and the
index that moves a tag is written only once every child is in place.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import json
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from builder.core.engine import Engine
from builder.core.registry import (OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST, Registry, RegistryError, sha256_digest)


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


class LayerCache:
    """Compressed layers keyed by their uncompressed digest (diff_id): each layer is gzipped once per machine.

    Compression is most of a push's cost (a Debian base layer takes seconds),
    and the same base layer recurs across flavors, rebuilds and registries.
    Files are named by their own digest and checked on every read, so a
    damaged entry is recompressed, never uploaded. Safe to delete at any time.
    """

    def __init__(self, root: Path | None):
        self.root = root

    def _paths(self, diff_id: str) -> tuple[Path, Path]:
        return self.root / "by-diff-id" / diff_id.split(":", 1)[1], self.root / "blobs"

    def get(self, diff_id: str) -> bytes | None:
        if not self.root:
            return None
        ref, blobs = self._paths(diff_id)
        try:
            digest = ref.read_text().strip()
            data = (blobs / digest).read_bytes()
        except OSError:
            return None
        return data if hashlib.sha256(data).hexdigest() == digest else None

    def put(self, diff_id: str, data: bytes) -> None:
        if not self.root:
            return
        ref, blobs = self._paths(diff_id)
        digest = hashlib.sha256(data).hexdigest()
        for path, content in ((blobs / digest, data), (ref, digest.encode())):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(content)
            tmp.replace(path)

    def compressed(self, diff_id: str, read) -> bytes:
        data = self.get(diff_id)
        if data is None:
            data = _gzip(read())
            self.put(diff_id, data)
        return data


def push_image(engine: Engine, image: str, registry: Registry, repo: str, mount_from: tuple[str, ...] = (),
               cache: LayerCache | None = None) -> Pushed:
    """Upload an engine image's layers, config and manifest; no tag is created or moved.

    `mount_from`: repositories in the same registry that may already hold
    some layers (the base image's), linked instead of uploaded.
    """
    cache = cache or LayerCache(None)
    with tempfile.TemporaryDirectory(prefix="oci-") as tmp:
        with tarfile.open(engine.save(image, Path(tmp) / "image.tar")) as tar:
            [entry] = json.load(tar.extractfile("manifest.json"))
            config_bytes = tar.extractfile(entry["Config"]).read()
            diff_ids = json.loads(config_bytes)["rootfs"]["diff_ids"]
            layers = []
            for name, diff_id in zip(entry["Layers"], diff_ids, strict=True):
                blob = cache.compressed(diff_id, lambda n=name: tar.extractfile(n).read())
                layers.append({"mediaType": OCI_LAYER_GZIP, "size": len(blob),
                               "digest": registry.upload_blob(repo, blob, mount_from=mount_from)})
    config = json.loads(config_bytes)
    manifest = canonical({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": registry.upload_blob(repo, config_bytes),
                   "size": len(config_bytes)},
        "layers": layers,
    })
    digest = registry.put_manifest(repo, sha256_digest(manifest), manifest, OCI_MANIFEST)
    return Pushed(repo, digest, len(manifest), platform_of(config), config.get("config", {}).get("Labels") or {})


def push_assembled(store, image, registry: Registry, repo: str, base_registry: Registry,
                   mount_from: tuple[str, ...] = ()) -> Pushed:
    """Upload an assembled image's blobs and manifest by digest; no tag is created or moved.

    Blobs the registry has are skipped; the base's layers are mounted from
    `mount_from` (same registry) when it can, else read from the store or
    the base's registry and sent.
    """
    from builder.build.assembly.append import base_layer
    for desc in image.layers:
        digest = desc["digest"]
        if registry.blob_exists(repo, digest):
            continue
        if mount_from and registry.mount_blob(repo, digest, mount_from):
            continue
        data = store.get(digest) or base_layer(store, base_registry, image, digest)
        registry.upload_blob(repo, data, digest)
    registry.upload_blob(repo, image.config, image.config_digest)
    digest = registry.put_manifest(repo, image.digest, image.manifest, OCI_MANIFEST)
    if digest != image.digest:
        raise RegistryError(f"registry {registry.host} stored manifest {image.digest[:19]} as {digest[:19]}")
    return Pushed(repo, digest, len(image.manifest), image.platform, image.labels)


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


def platform_key(p: dict) -> str:
    return "/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)
