"""Documents attached to an image as OCI referrers (OCI distribution spec 1.1), and read back.

Each document is an artifact manifest: an OCI image manifest with an
`artifactType`, the empty config, one layer (the document) and `subject` =
the image's manifest. A registry that serves the referrers API says so when
the manifest is pushed (OCI-Subject header) and lists it at
/v2/<repo>/referrers/<digest>. Any other registry (Debian's docker-registry
2.8) gets the referrers tag schema: an OCI index tagged `sha256-<hex>` that
lists the subject's referrers, updated read-modify-write.
"""

from __future__ import annotations

import base64
import json

from builder.core.registry import OCI_INDEX, OCI_MANIFEST, Registry, RegistryError, sha256_digest
from builder.core.oci import canonical

EMPTY = b"{}"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
CREATED = "org.opencontainers.image.created"
TITLE = "org.opencontainers.image.title"
# File names `oras pull` writes the documents to (it skips a layer without a title).
FILENAMES = {"application/vnd.cyclonedx+json": "sbom.cdx.json", "application/openvex+json": "vex.openvex.json",
             "application/vnd.in-toto+json": "provenance.intoto.json"}


def empty_descriptor() -> dict:
    return {"mediaType": EMPTY_TYPE, "digest": sha256_digest(EMPTY), "size": len(EMPTY),
            "data": base64.b64encode(EMPTY).decode()}


def artifact_manifest(subject: dict, artifact_type: str, document: bytes, created: str) -> bytes:
    """`subject`: the image manifest's descriptor (mediaType, digest, size)."""
    return canonical({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
        "config": empty_descriptor(),
        "layers": [{"mediaType": artifact_type, "digest": sha256_digest(document), "size": len(document),
                    "annotations": {TITLE: FILENAMES.get(artifact_type, "document.json")}}],
        "subject": {k: subject[k] for k in ("mediaType", "digest", "size")},
        "annotations": {CREATED: created},
    })


def tag_for(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    return f"{algo}-{hexpart}"


def _descriptor(manifest: bytes) -> dict:
    doc = json.loads(manifest)
    out = {"mediaType": OCI_MANIFEST, "digest": sha256_digest(manifest), "size": len(manifest),
           "artifactType": doc["artifactType"]}
    if doc.get("annotations"):
        out["annotations"] = doc["annotations"]
    return out


def attach(registry: Registry, repo: str, subject: dict, artifact_type: str, document: bytes,
           created: str) -> str:
    """Push `document` as a referrer of `subject` (which must already be in the registry); returns its digest.

    The document and the empty config go first, then the artifact manifest;
    the tag index is updated last, so nothing ever lists a referrer that is
    not there. The same document again changes nothing.
    """
    manifest = artifact_manifest(subject, artifact_type, document, created)
    registry.upload_blob(repo, EMPTY)
    registry.upload_blob(repo, document)
    digest, api = registry.put_manifest_subject(repo, sha256_digest(manifest), manifest, OCI_MANIFEST)
    if not api:
        _add_to_tag_index(registry, repo, subject["digest"], _descriptor(manifest))
    return digest


def _add_to_tag_index(registry: Registry, repo: str, subject: str, desc: dict) -> None:
    tag = tag_for(subject)
    got = registry.get_manifest(repo, tag)
    index = json.loads(got[0]) if got else {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    if any(m.get("digest") == desc["digest"] for m in index.get("manifests", [])):
        return
    index["manifests"] = [*index.get("manifests", []), desc]
    registry.put_manifest(repo, tag, canonical(index), OCI_INDEX)


def referrers(registry: Registry, repo: str, digest: str, artifact_type: str | None = None) -> list[dict]:
    """The descriptors of `digest`'s referrers: through the referrers API where the registry serves it,
    else through the tag schema. `artifact_type` filters them."""
    index = registry.get_referrers(repo, digest)
    if index is None:
        got = registry.get_manifest(repo, tag_for(digest))
        index = json.loads(got[0]) if got else {"manifests": []}
    found = index.get("manifests", [])
    return [m for m in found if artifact_type is None or m.get("artifactType") == artifact_type]


def fetch(registry: Registry, repo: str, descriptor: dict) -> bytes:
    """The document a referrer carries, checked against the digests that name it."""
    got = registry.get_manifest(repo, descriptor["digest"])
    if got is None or got[2] != descriptor["digest"]:
        raise RegistryError(f"referrer {descriptor['digest'][:19]} is listed in {registry.host}/{repo} but its "
                            "manifest is missing or differs")
    layer = json.loads(got[0])["layers"][0]
    data = registry.get_blob(repo, layer["digest"])
    if sha256_digest(data) != layer["digest"]:
        raise RegistryError(f"referrer {descriptor['digest'][:19]}: its document does not match its digest")
    return data


def latest(registry: Registry, repo: str, digest: str, artifact_type: str) -> bytes | None:
    """The newest referrer document of this type (ties by digest, so every read gives the same), or None.

    Several can exist: each run that pushed this very image attached its own.
    """
    found = referrers(registry, repo, digest, artifact_type)
    if not found:
        return None
    newest = max(found, key=lambda d: (d.get("annotations", {}).get(CREATED, ""), d["digest"]))
    return fetch(registry, repo, newest)

