"""The publish, signing, ci and verify sections: where images go, who signs them, what a consumer trusts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from builder.core import arches
from builder.config.values import flag
from builder.config.paths import cli_path, project_path
from builder.config.settings import Destination, Trust

REPO_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")


# A host name, an IPv4 address or a bracketed IPv6 one, then an optional port.
HOST_RE = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                     r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)(?::[0-9]{1,5})?$")


@dataclass(frozen=True)
class PublishConfig:
    """The publish section with its defaults applied; flags complete it (destination, publish_arches)."""
    registry: str        # publish.registry, else the local registry
    repository: str      # publish.repository, else images.repository
    local_port: int      # local.registry_port: which registry is the project's own
    retries: int
    backoff: float
    arches: str          # publish.arches, else local.arches


@dataclass(frozen=True)
class SigningConfig:
    """The signing and verify sections: who signs (signing_choice) and what a consumer trusts (trust)."""
    key: str                       # a file of this project or a KMS URI; "" for none
    keyless: bool
    local_key: Path                # the key pair `invoke up` makes for the local registry
    identity: str
    issuer: str
    trusted_keys: tuple[str, ...]  # files of this project (resolved) or KMS URIs
    origins: tuple[str, ...]       # verify.origins, each checked


def publish_config(c_config) -> PublishConfig:
    pub, port = c_config.publish, int(c_config.local["registry_port"])
    return PublishConfig((pub.get("registry") or f"127.0.0.1:{port}").strip(),
                         (pub.get("repository") or c_config.images["repository"]).strip(), port,
                         int(pub["retries"]), float(pub["backoff"]),
                         str(pub.get("arches") or c_config.local["arches"]))


def signing_config(c_config) -> SigningConfig:
    s = c_config.signing
    key = (s.get("key") or "").strip()
    return SigningConfig(
        key=_file_or_uri(key, project_path) if key else "",
        keyless=flag(s.get("keyless", False), "signing.keyless"), local_key=project_path(s["local_key"]),
        identity=str(s.get("identity") or ""), issuer=str(s.get("issuer") or ""),
        trusted_keys=tuple(_file_or_uri(k.strip(), project_path)
                           for k in str(s.get("trusted_keys") or "").split(",") if k.strip()),
        origins=verify_origins(str(c_config.get("verify", {}).get("origins") or "").split(",")))


def destination(p: PublishConfig, registry: str | None = None, repository: str | None = None):
    """(Destination, retries, backoff) for publish/push/assemble: where to, parsed and checked."""
    host = (registry or p.registry).strip()
    if not HOST_RE.match(host) or (":" in host.rsplit("]", 1)[-1] and not 0 < int(host.rsplit(":", 1)[1]) < 65536):
        raise ValueError(f"registry {host!r}: give HOST[:PORT] without scheme or path, e.g. ghcr.io or 127.0.0.1:5000")
    repo = (repository or p.repository).strip()
    if not REPO_RE.match(repo):
        raise ValueError(f"repository {repo!r} is not a valid name: lowercase path components such as "
                         "org/base-gosu")
    local = host in {f"{name}:{p.local_port}" for name in ("127.0.0.1", "localhost")}
    return Destination(host, repo, local), p.retries, p.backoff


def signing_choice(s: SigningConfig, key: str | None = None, keyless: bool = False) -> tuple[str, bool, Path]:
    """(key, keyless, the local key pair's path) a publish's signer is chosen from: --sign-key (a file relative
    to where the user stands, or a KMS URI) else signing.key, --keyless else signing.keyless."""
    chosen = (key or "").strip()
    return _file_or_uri(chosen, cli_path) if chosen else s.key, keyless or s.keyless, s.local_key


def _file_or_uri(value: str, resolve) -> str:
    """A KMS URI as it is, a key file through `resolve` (to the project, or to where the user stands)."""
    return value if "://" in value else str(resolve(value))


def publish_arches(p: PublishConfig, arch: str | None) -> str:
    return arch or p.arches


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


def trust(s: SigningConfig, keys: list[str] | None = None, identity: str | None = None, issuer: str | None = None,
          origins: list[str] | None = None):
    """What `invoke verify` trusts: public keys (--key, repeatable), else a keyless identity and issuer; and
    the repositories a signature may name besides the image's own (--origin, repeatable; verify.origins)."""
    identity, issuer = identity or s.identity, issuer or s.issuer
    if keys:
        paths = [_file_or_uri(k, cli_path) for k in keys]
    elif identity or issuer:
        paths = []
    else:
        paths = list(s.trusted_keys) or [str(s.local_key.with_suffix(".pub"))]
    if not paths and not (identity and issuer):
        raise ValueError("keyless verification needs both --identity REGEX and --issuer URL "
                         "(signing.identity, signing.issuer)")
    for p in paths:
        if "://" not in p and not Path(p).is_file():
            raise ValueError(f"trusted key {p} does not exist (--key, signing.trusted_keys; `invoke up` makes the "
                             "local registry's)")
    return Trust(tuple(paths), identity, issuer, verify_origins(origins) if origins else s.origins)


def verify_origins(names: list[str]) -> tuple[str, ...]:
    """--origin, else verify.origins: HOST[:PORT]/REPO each, as a signature's docker-reference names it."""
    out = []
    for name in (n.strip() for n in names if n.strip()):
        host, _, repo = name.partition("/")
        if not repo or ":" in repo or "@" in repo or not REPO_RE.match(repo) or "://" in name:
            raise ValueError(f"origin {name!r} is not HOST[:PORT]/REPO (no tag or digest), e.g. "
                             "ghcr.io/org/base-gosu (--origin, verify.origins)")
        out.append(name)
    return tuple(out)
