"""Hand assembled images to the engine, which only runs them: one `docker load` of a docker-archive.

The engine names a loaded image by the sha256 of its config bytes, so the
image ID is the config digest the build computed. Base layers the engine
already has (by chain ID) are not sent: the archive first carries only the
new layers, and only if the engine lacks a base layer is it loaded whole.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from pathlib import Path

from builder.image.assembly.append import Image, base_layer
from builder.core.engine import Engine, EngineError
from builder.image.assembly.store import Store


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode = len(data), 0o644
    tar.addfile(ti, io.BytesIO(data))


def _blob_name(digest: str) -> str:
    return f"blobs/sha256/{digest.split(':', 1)[1]}"


def write_archive(path: Path, images: list[tuple[str, Image]], layer_bytes) -> None:
    """A docker-archive for `docker load`: manifest.json, configs, and the layers `layer_bytes` returns."""
    manifest, written = [], set()
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for tag, img in images:
            _add(tar, _blob_name(img.config_digest), img.config)
            for desc in img.layers:
                data = layer_bytes(img, desc["digest"])
                if data is not None and desc["digest"] not in written:
                    _add(tar, _blob_name(desc["digest"]), data)
                    written.add(desc["digest"])
            manifest.append({"Config": _blob_name(img.config_digest), "RepoTags": [tag],
                             "Layers": [_blob_name(d["digest"]) for d in img.layers]})
        _add(tar, "manifest.json", json.dumps(manifest).encode())


def load(engine: Engine, store: Store, registry_for, images: list[tuple[str, Image]]) -> int:
    """Make each tag name its image in the engine; returns how many had to be loaded."""
    have = engine.image_ids([tag for tag, _ in images])
    todo = [(tag, img) for tag, img in images if have.get(tag) != img.config_digest]
    if not todo:
        return 0

    def own_only(img: Image, digest: str) -> bytes | None:
        return store.get(digest) if digest == img.own_layer["digest"] else None

    def everything(img: Image, digest: str) -> bytes:
        return store.get(digest) or base_layer(store, registry_for(img.base.host), img, digest)

    with tempfile.TemporaryDirectory(prefix="load-") as tmp:
        archive = Path(tmp) / "images.tar"
        write_archive(archive, todo, own_only)
        try:
            engine.run("load", "--quiet", "--input", str(archive), timeout=900)
        except EngineError:  # the engine lacks a base layer: send them all
            write_archive(archive, todo, everything)
            engine.run("load", "--quiet", "--input", str(archive), timeout=900)
    have = engine.image_ids([tag for tag, _ in todo])
    wrong = [f"{tag} is {have.get(tag)}, not {img.config_digest}" for tag, img in todo
             if have.get(tag) != img.config_digest]
    if wrong:
        raise EngineError(f"after `docker load`: {'; '.join(wrong)}")
    return len(todo)
