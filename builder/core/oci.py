"""Images as OCI artifacts: canonical JSON, platforms, and indexes and image configs read from a registry.

Shared by the stages that write or read images in a registry (publish,
consumer, local seeding); the pushing itself is builder/publish/push.py.
"""

from __future__ import annotations

import json

from builder.core.registry import Registry


def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def platform_of(config: dict) -> dict:
    p = {"architecture": config["architecture"], "os": config["os"]}
    if config.get("variant"):
        p["variant"] = config["variant"]
    return p


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
