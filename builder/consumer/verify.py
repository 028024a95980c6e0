"""`invoke verify REF`: what a downstream team runs before `FROM`: signatures, attestations, gosu's hash.

The tag is resolved to a digest once and everything is checked by digest:
the index's signature, each per-arch manifest's, both attestations of each
per-arch manifest (their in-toto subject must be that manifest), and gosu's
sha256 in the SBOM against the image's label. cosign does the cryptography;
this module adds what cosign leaves to the caller (the repository a
signature payload names, an attestation's subject, the SBOM's content).
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from builder.core.errors import BuilderError
from builder.core import oci
from builder.publish import signing
from builder.image.audit.vulns import parse_label
from builder.image.model import LABEL
from builder.core.registry import Registry, is_loopback
from builder.config.settings import Trust

INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")


class TrustError(BuilderError):
    pass


@dataclass(frozen=True)
class Row:
    check: str
    what: str
    digest: str
    problem: str = ""   # empty: it holds
    origin: str = ""    # a signature: the repository its payload names

    @property
    def ok(self) -> bool:
        return not self.problem


@dataclass
class Checker:
    cosign: Path
    trust: Trust
    registry: Registry
    repo: str
    environ: dict = field(default_factory=lambda: dict(os.environ), repr=False)

    @property
    def name(self) -> str:
        return f"{self.registry.host}/{self.repo}"

    def _cosign(self, args: list[str], digest: str, what: str) -> tuple[str, str]:
        """(stdout of the first trusted key/identity that verifies, "") or ("", why none did)."""
        http = ["--allow-http-registry"] if is_loopback(self.registry.host) else []
        why = ""
        for flags in self.trust.flag_sets():
            try:
                return signing.run_cosign(self.cosign, [*args, *flags, *http, f"{self.name}@{digest}"],
                                          self.environ, self.registry, what), ""
            except signing.SigningError as e:
                why = str(e).split("cosign: ", 1)[-1]
        return "", why

    def signature(self, what: str, digest: str) -> Row:
        check = "signature"
        if not signing.has(self.registry, self.repo, digest):
            return Row(check, what, digest, f"unsigned: no signature ({signing.sig_tag(digest)} is absent)")
        out, why = self._cosign(["verify", "--output", "json"], digest, "verify")
        if not out:
            return Row(check, what, digest, f"not signed by a trusted {self.trust.describe()} ({why})")
        payloads = [p for p in json.loads(out) if p.get("critical", {}).get("image", {})
                    .get("docker-manifest-digest") == digest]
        refs = sorted({p["critical"].get("identity", {}).get("docker-reference", "") for p in payloads})
        allowed = [r for r in (self.name, *self.trust.origins) if r in refs]
        if not allowed:
            named = f" or {', '.join(self.trust.origins)}" if self.trust.origins else ""
            return Row(check, what, digest, f"the signature payload is for {', '.join(refs) or 'no repository'}, "
                                            f"not {self.name}{named}: a signature copied from another repository "
                                            "(a mirror of it? name where it was signed with --origin HOST/REPO)")
        return Row(check, what, digest, origin=allowed[0])

    def attestation(self, kind: str, what: str, digest: str) -> tuple[Row, dict | None]:
        check = f"attestation {kind}"
        if not signing.has(self.registry, self.repo, digest, "att"):
            return Row(check, what, digest, f"no attestations ({signing.sig_tag(digest, 'att')} is absent)"), None
        out, why = self._cosign(["verify-attestation", "--type", kind], digest, "verify-attestation")
        if not out and "subject digest" in why:
            return Row(check, what, digest, f"its subject is another image, not this manifest (cosign: {why})"), None
        if not out:
            return Row(check, what, digest, f"no {kind} attestation by a trusted {self.trust.describe()} ({why})"), \
                None
        statements_ = [json.loads(base64.b64decode(json.loads(line)["payload"])) for line in out.splitlines()
                       if line.strip()]
        statements_ = [s for s in statements_ if s.get("predicateType") == signing.PREDICATE_TYPES[kind]]
        hexdigest = digest.split(":", 1)[1]
        mine = [s for s in statements_ if any(sub.get("digest", {}).get("sha256") == hexdigest
                                              for sub in s.get("subject", []))]
        if not mine:
            others = sorted({sub.get("digest", {}).get("sha256", "?")[:12] for s in statements_
                             for sub in s.get("subject", [])})
            return Row(check, what, digest, f"its subject is another image (sha256:{', sha256:'.join(others)}), "
                                            f"not this manifest"), None
        return Row(check, what, digest), mine[-1]["predicate"]

    def vulns_label(self, digest: str) -> str:
        return oci.child_config(self.registry, self.repo, digest).get("config", {}).get("Labels", {}) \
            .get(f"{LABEL}.gosu.vulns", "")

    def gosu_hash(self, what: str, digest: str, sbom: dict | None) -> Row:
        check = "gosu sha256: SBOM = label"
        if sbom is None:
            return Row(check, what, digest, "no verified SBOM to read it from")
        label = oci.child_config(self.registry, self.repo, digest).get("config", {}).get("Labels", {}) \
            .get(f"{LABEL}.gosu.sha256", "")
        listed = gosu_sha256(sbom)
        if not label or listed != label:
            return Row(check, what, digest, f"the SBOM lists gosu sha256 {listed or '(none)'}, the image's label "
                                            f"{LABEL}.gosu.sha256 says {label or '(none)'}")
        return Row(check, what, digest)


def vex_row(what: str, digest: str, label: str, vex: dict | None) -> Row:
    """The signed VEX speaks about this very image, and says `affected` exactly as often as its label counts."""
    check = "VEX = vulns label"
    if vex is None:
        return Row(check, what, digest, "no verified VEX to read it from")
    try:
        count, _ = parse_label(label)
    except ValueError as e:
        return Row(check, what, digest, str(e))
    statements = vex.get("statements") or []
    products = {p.get("@id", "") for s in statements for p in s.get("products", [])}
    wanted = quote(digest, safe="")
    if any(f"@{wanted}" not in p for p in products):
        return Row(check, what, digest, f"the VEX speaks about {', '.join(sorted(products))}, not this manifest")
    affected = sum(1 for s in statements if s.get("status") == "affected")
    if affected != max(count, 0):  # "unknown" (no function table): nothing can be said to be affected
        return Row(check, what, digest, f"the VEX says affected {affected} time(s), the label {LABEL}.gosu.vulns "
                                        f"counts {count} ({label})")
    return Row(check, what, digest)


def _platform(desc: dict) -> str:
    p = desc.get("platform", {})
    return "/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)


def check(checker: Checker, ref: str) -> tuple[str, list[Row]]:
    """(the digest the reference resolved to, one row per check)."""
    got = checker.registry.get_manifest(checker.repo, ref)
    if got is None:
        raise TrustError(f"{checker.name}:{ref} does not exist in the registry")
    body, media_type, digest = got
    doc = json.loads(body)
    rows = []
    if media_type in INDEX_TYPES or "manifests" in doc:
        rows.append(checker.signature("index", digest))
        children = [(_platform(d), d["digest"]) for d in doc.get("manifests", [])
                    if d.get("platform", {}).get("os", "unknown") != "unknown"]
    else:
        children = [("manifest", digest)]
    for what, child in children:
        rows.append(checker.signature(what, child))
        found = {}
        vulns = checker.vulns_label(child)
        # An image whose gosu was not scanned when it was built has no VEX to check.
        for kind in [*signing.ATTESTATIONS, *(["openvex"] if vulns else [])]:
            row, found[kind] = checker.attestation(kind, what, child)
            rows.append(row)
        rows.append(checker.gosu_hash(what, child, found.get("cyclonedx")))
        if vulns:
            rows.append(vex_row(what, child, vulns, found.get("openvex")))
    return digest, rows


def table(ref: str, digest: str, rows: list[Row]) -> list[str]:
    lines = [f"verify {ref} -> {digest}", f"{'check':28} {'what':16} {'digest':19}  result", "-" * 80]
    for r in rows:
        result = "FAILED: " + r.problem if not r.ok else f"ok, signed as {r.origin}" if r.origin else "ok"
        lines.append(f"{r.check:28} {r.what:16} {r.digest[:19]:19}  {result}")
    bad = [r for r in rows if not r.ok]
    lines.append(f"{len(rows) - len(bad)}/{len(rows)} checks hold" +
                 ("" if not bad else f"; {len(bad)} failed: do not build on this image"))
    return lines


def gosu_sha256(sbom: dict) -> str | None:
    """gosu's SHA-256 as a CycloneDX SBOM lists it (the component with bom-ref `gosu`, at any depth), or None."""
    stack = list(sbom.get("components") or [])
    while stack:
        c = stack.pop()
        if c.get("bom-ref") == "gosu" or c.get("name") == "gosu":
            for h in c.get("hashes") or []:
                if h.get("alg") in ("SHA-256", "sha256"):
                    return h.get("content")
        stack.extend(c.get("components") or [])
    return None

