"""The publish, signing, ci and verify sections: where images go, who signs them, what a consumer trusts."""

from __future__ import annotations

import re
from pathlib import Path

from builder.core import arches
from builder.config import flag
from builder.config.paths import cli_path, project_path
from builder.config.settings import Destination, Trust

REPO_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")


# A host name, an IPv4 address or a bracketed IPv6 one, then an optional port.
HOST_RE = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                     r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)(?::[0-9]{1,5})?$")


def destination(c_config, registry: str | None = None, repository: str | None = None):
    """(Destination, retries, backoff) for publish/push/assemble: where to, parsed and checked."""
    pub = c_config.publish
    host = (registry or pub.get("registry") or f"127.0.0.1:{int(c_config.local['registry_port'])}").strip()
    if not HOST_RE.match(host) or (":" in host.rsplit("]", 1)[-1] and not 0 < int(host.rsplit(":", 1)[1]) < 65536):
        raise ValueError(f"registry {host!r}: give HOST[:PORT] without scheme or path, e.g. ghcr.io or 127.0.0.1:5000")
    repo = (repository or pub.get("repository") or c_config.images["repository"]).strip()
    if not REPO_RE.match(repo):
        raise ValueError(f"repository {repo!r} is not a valid name: lowercase path components such as "
                         "org/base-gosu")
    local = host in {f"{name}:{int(c_config.local['registry_port'])}" for name in ("127.0.0.1", "localhost")}
    return Destination(host, repo, local), int(pub["retries"]), float(pub["backoff"])


def signing_choice(c_config, key: str | None = None, keyless: bool = False) -> tuple[str, bool, Path]:
    """(key, keyless, the local key pair's path) a publish's signer is chosen from: --sign-key else signing.key
    (a file relative to where the user stands, or in config to this project; a KMS URI as it is), --keyless
    else signing.keyless."""
    s = c_config.signing
    chosen = (key or s.get("key") or "").strip()
    if chosen and "://" not in chosen:
        chosen = str(cli_path(chosen) if key else project_path(chosen))
    return chosen, keyless or flag(s.get("keyless", False), "signing.keyless"), project_path(s["local_key"])


def publish_arches(c_config, arch: str | None) -> str:
    return arch or c_config.publish.get("arches") or c_config.local["arches"]


def ci_runners(c_config) -> tuple[dict[str, str], str]:
    """ci.runners (dpkg arch -> runner label) and ci.other_arches_on (the arch whose runner emulates the rest)."""
    ci, runners = c_config.ci, {}
    for item in (i.strip() for i in str(ci["runners"]).split(",") if i.strip()):
        name, sep, label = item.partition("=")
        if not sep or not label.strip():
            raise ValueError(f"ci.runners: {item!r} is not ARCH=RUNNER-LABEL, e.g. arm64=ubuntu-24.04-arm")
        try:
            runners[arches.get(name, arches.IMAGE_ARCHES).dpkg] = label.strip()
        except arches.UnknownArch as e:
            raise ValueError(f"ci.runners: {e}") from None
    try:
        host = arches.get(str(ci["other_arches_on"]), arches.IMAGE_ARCHES).dpkg
    except arches.UnknownArch as e:
        raise ValueError(f"ci.other_arches_on: {e}") from None
    return runners, host


def trust(c_config, keys: list[str] | None = None, identity: str | None = None, issuer: str | None = None,
          origins: list[str] | None = None):
    """What `invoke verify` trusts: public keys (--key, repeatable), else a keyless identity and issuer; and
    the repositories a signature may name besides the image's own (--origin, repeatable; verify.origins)."""
    s = c_config.signing
    identity, issuer = identity or s.get("identity") or "", issuer or s.get("issuer") or ""
    if keys:
        paths = [cli_path(k) if "://" not in k else k for k in keys]
    elif identity or issuer:
        paths = []
    else:
        configured = [k.strip() for k in str(s.get("trusted_keys") or "").split(",") if k.strip()]
        paths = [project_path(k) if "://" not in k else k for k in configured] or \
            [project_path(s["local_key"]).with_suffix(".pub")]
    if not paths and not (identity and issuer):
        raise ValueError("keyless verification needs both --identity REGEX and --issuer URL "
                         "(signing.identity, signing.issuer)")
    for p in paths:
        if isinstance(p, Path) and not p.is_file():
            raise ValueError(f"trusted key {p} does not exist (--key, signing.trusted_keys; `invoke up` makes the "
                             "local registry's)")
    return Trust(tuple(str(p) for p in paths), identity, issuer, verify_origins(c_config, origins))


def verify_origins(c_config, flags: list[str] | None) -> tuple[str, ...]:
    """--origin, else verify.origins: HOST[:PORT]/REPO each, as a signature's docker-reference names it."""
    names = flags if flags else [o for o in str(c_config.get("verify", {}).get("origins") or "").split(",")]
    out = []
    for name in (n.strip() for n in names if n.strip()):
        host, _, repo = name.partition("/")
        if not repo or ":" in repo or "@" in repo or not REPO_RE.match(repo) or "://" in name:
            raise ValueError(f"origin {name!r} is not HOST[:PORT]/REPO (no tag or digest), e.g. "
                             "ghcr.io/org/base-gosu (--origin, verify.origins)")
        out.append(name)
    return tuple(out)
