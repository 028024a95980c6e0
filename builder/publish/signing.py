"""Sign and attest published images with cosign (Debian's build, from local/tools.py).

cosign itself writes every signature and attestation, so what users verify
with (`cosign verify`, key files, KMS URIs, keyless certificates) is exactly
what is published. Signatures go to cosign's `sha256-<hex>.sig` tag and
attestations to `.att`, by digest. A password (COSIGN_PASSWORD) or registry
credential is handed to cosign through its environment or a private
DOCKER_CONFIG, never on a command line, never printed.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from builder.core.errors import BuilderError
from builder.core.registry import Registry, is_loopback
from builder.image.audit import openvex

# `cosign attest --type` names and the predicate types they produce: every image carries these two,
ATTESTATIONS = {"cyclonedx": "https://cyclonedx.org/bom", "slsaprovenance1": "https://slsa.dev/provenance/v1"}
# and an image whose gosu was scanned (label org.base-gosu.gosu.vulns) its VEX too.
PREDICATE_TYPES = {**ATTESTATIONS, "openvex": openvex.PREDICATE_TYPE}
OIDC_ENV = ("ACTIONS_ID_TOKEN_REQUEST_URL", "SIGSTORE_ID_TOKEN")


class SigningError(BuilderError):
    """Signing could not be done; the message names what and what to do, and holds no secret."""


@dataclass(frozen=True)
class Identity:
    key: str = ""          # a cosign key file or any KMS URI cosign takes
    keyless: bool = False  # the CI runner's OIDC identity (Fulcio certificate, Rekor entry)
    local: bool = False    # the local registry's key pair made by `invoke up` (empty password)

    def describe(self) -> str:
        if self.keyless:
            return "keyless (OIDC)"
        return f"{'local key' if self.local else 'key'} {self.key}"


def choose(key: str, keyless: bool, unsigned: bool, local: bool, local_key: Path, registry: str) -> Identity | None:
    """Who signs this publish, or None for --unsigned; refused before any byte is sent."""
    if key and keyless:
        raise SigningError("--sign-key (signing.key) and --keyless (signing.keyless) both given: choose one")
    if unsigned and (key or keyless):
        raise SigningError("--unsigned contradicts --sign-key/--keyless (or signing.key/keyless in config): "
                           "drop one")
    if unsigned:
        return None
    if keyless:
        return Identity(keyless=True)
    if key:
        return Identity(key=key)
    if local:
        return Identity(key=str(local_key.with_suffix(".key")), local=True)
    raise SigningError(
        f"{registry} is not this machine's local registry, and nothing would sign what is published there: give "
        "--sign-key FILE_OR_KMS_URI (config signing.key; its password in COSIGN_PASSWORD) or --keyless in CI "
        "(config signing.keyless), or pass --unsigned to publish unsigned images on purpose. Nothing was pushed")


def _scrub(text: str, secrets: list[str]) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text


@dataclass
class Signer:
    cosign: Path
    identity: Identity
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)
    timeout: float = 180
    signed: list[str] = field(default_factory=list)   # refs this run signed or attested (the no-op check)

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in self.environ.items() if k != "COSIGN_PASSWORD"}
        if self.identity.local:
            env["COSIGN_PASSWORD"] = ""
        elif self.identity.key:
            env["COSIGN_PASSWORD"] = self.environ.get("COSIGN_PASSWORD", "")
        return env

    def run(self, args: list[str], registry: Registry | None, what: str) -> str:
        try:
            return run_cosign(self.cosign, args, self._env(), registry, what, self.timeout,
                              [self.environ.get("COSIGN_PASSWORD", "")])
        except SigningError as e:
            raise SigningError(str(e).replace(": cosign: ", f" with {self.identity.describe()}: cosign: ", 1)) from None

    def registry_flags(self, registry: Registry) -> list[str]:
        # Plain HTTP only for loopback registries, as the project's own client does.
        return ["--allow-http-registry"] if is_loopback(registry.host) else []

    def identity_flags(self) -> list[str]:
        if self.identity.keyless:
            return []  # Fulcio + Rekor: cosign takes the runner's ambient OIDC token
        return ["--key", self.identity.key, "--tlog-upload=false"]

    def preflight(self) -> None:
        """Prove the identity works before any byte is sent: the key opens with its password, or OIDC is there."""
        if self.identity.keyless:
            if not any(self.environ.get(k) for k in OIDC_ENV):
                raise SigningError(
                    "keyless signing needs the CI runner's OIDC identity, and none is here (no "
                    "ACTIONS_ID_TOKEN_REQUEST_URL or SIGSTORE_ID_TOKEN): in GitHub Actions give the job "
                    "`permissions: id-token: write`; elsewhere use --sign-key. Nothing was pushed")
            return
        key = self.identity.key
        if "://" not in key and not os.access(key, os.R_OK):
            hint = " (`invoke up` makes it)" if self.identity.local else ""
            raise SigningError(f"signing key {key} is missing or unreadable{hint}. Nothing was pushed")
        self.run(["public-key", "--key", key], None, f"opening signing key {key} (its password comes from "
                 "COSIGN_PASSWORD)")

    def sign(self, registry: Registry, ref: str) -> None:
        self.run(["sign", *self.identity_flags(), *self.registry_flags(registry), ref], registry, f"signing {ref}")
        self.signed.append(ref)

    def attest(self, registry: Registry, ref: str, kind: str, predicate: dict) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="predicate-") as f:
            json.dump(predicate, f)
            f.flush()
            self.run(["attest", *self.identity_flags(), *self.registry_flags(registry), "--type", kind,
                      "--predicate", f.name, ref], registry, f"attesting {kind} to {ref}")
        self.signed.append(f"{ref} {kind}")


def run_cosign(cosign: Path, args: list[str], env: dict[str, str], registry: Registry | None, what: str,
               timeout: float = 180, secrets: list[str] | None = None) -> str:
    """Run cosign; any failure is one SigningError naming `what` and cosign's own last words (no secret)."""
    secrets = [*(secrets or []), *(registry.credentials[1:] if registry and registry.credentials else [])]
    with tempfile.TemporaryDirectory(prefix="cosign-auth-") as tmp:
        env = {**env, "COSIGN_YES": "true"}
        if registry and registry.credentials:
            # A private DOCKER_CONFIG: the credentials never reach a command line.
            auth = base64.b64encode(":".join(registry.credentials).encode()).decode()
            fd = os.open(Path(tmp) / "config.json", os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"auths": {registry.host: {"auth": auth}}}, f)
            env["DOCKER_CONFIG"] = tmp
        try:
            p = subprocess.run([str(cosign), *args], env=env, capture_output=True, text=True, timeout=timeout,
                               stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise SigningError(f"{what}: cosign could not run ({e}); `invoke up` installs it") from None
    if p.returncode != 0:
        lines = [ln.strip() for ln in p.stderr.splitlines() if ln.strip()]
        last = _scrub(lines[-1] if lines else f"exit status {p.returncode}", secrets)
        raise SigningError(f"{what} failed: cosign: {last}")
    return p.stdout


def sig_tag(digest: str, suffix: str = "sig") -> str:
    return f"{digest.replace(':', '-')}.{suffix}"


def has(registry: Registry, repo: str, digest: str, suffix: str = "sig") -> bool:
    return registry.get_manifest(repo, sig_tag(digest, suffix)) is not None


def present_tags(registry: Registry, repo: str) -> frozenset[str]:
    """The repository's tags, read once per run: which digests already carry a signature (.sig) or an
    attestation (.att)."""
    return frozenset(registry.list_tags(repo))


Documents = Callable[[Registry, str, str], dict[str, dict]]


def seal(signer: Signer, registry: Registry, dest, digest: str, documents: Documents | None, log,
         present: frozenset[str]) -> None:
    """Sign a manifest by digest (and attest a per-arch one's documents), unless that is already done.

    `present` is the repository's tags as this run read them (present_tags), so a republish of
    unchanged images reads no signature and signs nothing new. Each digest is sealed once a run, so
    what this adds is never looked for again.
    """
    ref = dest.ref(digest)
    if sig_tag(digest) not in present:
        signer.sign(registry, ref)
        log.write(f"sign: {ref} signed ({signer.identity.describe()})\n")
    if documents and sig_tag(digest, "att") not in present:
        kinds = documents(registry, dest.repository, digest)
        for kind, predicate in kinds.items():
            signer.attest(registry, ref, kind, predicate)
        log.write(f"sign: {ref} attested ({', '.join(kinds)})\n")


def make_local_key(cosign: Path, prefix: Path, log) -> Path:
    """The local registry's key pair (empty password), made once; returns the public key's path."""
    pub = prefix.with_suffix(".pub")
    if prefix.with_suffix(".key").is_file() and pub.is_file():
        return pub
    prefix.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "COSIGN_PASSWORD": "", "COSIGN_YES": "true"}
    p = subprocess.run([str(cosign), "generate-key-pair", "--output-key-prefix", str(prefix)], env=env,
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise SigningError(f"cosign generate-key-pair for the local registry failed: {p.stderr.strip()[-300:]}")
    log.write(f"signing: made the local registry's key pair; verify with its public key {pub}\n")
    return pub
