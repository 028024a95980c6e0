"""Image references as users and configuration spell them: registry host, repository, tag or digest."""

from __future__ import annotations


def split_ref(ref: str) -> tuple[str, str, str]:
    """'alpine:3.20' -> (registry-1.docker.io, library/alpine, 3.20); 'h:5000/x/y:t' -> (h:5000, x/y, t)."""
    name, _, tag = ref.rpartition(":") if ":" in ref.split("/")[-1] else (ref, "", "latest")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first, rest, tag
    return "registry-1.docker.io", name if "/" in name else f"library/{name}", tag


def parse_ref(ref: str) -> tuple[str, str, str]:
    """(host, repo, tag or digest) of HOST[:PORT]/REPO:TAG or HOST[:PORT]/REPO@sha256:..."""
    if "@" in ref:
        name, digest = ref.split("@", 1)
        host, repo, _ = split_ref(name)
        return host, repo, digest
    return split_ref(ref)


