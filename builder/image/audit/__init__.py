"""The audit stage: what an image is made of and how it was made (build information, SBOM, provenance).

publish calls `attach` for each per-arch manifest it has just pushed, before
any tag moves; what it returns carries the very bytes attached, which
signing attests (nothing is read back from the registry).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Attached:
    sbom: str          # the referrer manifests' digests
    provenance: str
    sbom_doc: bytes    # the documents themselves, as attached (signing attests these very bytes)
    provenance_doc: bytes
    vex: str = ""      # the VEX referrer's digest and document ("" / b"": gosu was not scanned)
    vex_doc: bytes = b""


def documents(built, manifest_digest: str, repository: str = "", registry_for=None,
              run_url: str | None = None) -> tuple[bytes, bytes]:
    """(CycloneDX SBOM JSON, in-toto provenance JSON) of one assembled image (a make.Built) whose manifest
    is `manifest_digest`; `repository` names the subject (default: the image's own repository)."""
    from builder.core.clients import Clients
    from builder.core.emulation import native_arch
    from builder.image.audit import facts, provenance, sbom
    if manifest_digest != built.image.digest:
        raise ValueError(f"{built.tag}: manifest {manifest_digest[:19]} is not this image's "
                         f"({built.image.digest[:19]})")
    f = facts.gather(built, registry_for or Clients(), native_arch())
    run = provenance.ci_run_url() if run_url is None else run_url
    return sbom.document(f), provenance.document(f, repository or f.title.split(":")[0], run)


def attach(registry, repo: str, built, subject: dict, registry_for=None, run_url: str | None = None) -> Attached:
    """Push the image's SBOM and provenance as referrers of `subject` (its manifest, already pushed)."""
    from builder.image.audit import provenance, referrers, sbom
    from builder.image.audit import openvex
    sbom_doc, prov_doc = documents(built, subject["digest"], repo, registry_for, run_url)
    created = built.labels.get("org.opencontainers.image.created", "")
    attached = Attached(referrers.attach(registry, repo, subject, sbom.MEDIA_TYPE, sbom_doc, created),
                        referrers.attach(registry, repo, subject, provenance.MEDIA_TYPE, prov_doc, created),
                        sbom_doc, prov_doc)
    vex_doc = vex_document(built, subject["digest"], f"{registry.host}/{repo}")
    if not vex_doc:
        return attached
    return Attached(attached.sbom, attached.provenance, sbom_doc, prov_doc,
                    referrers.attach(registry, repo, subject, openvex.MEDIA_TYPE, vex_doc, created), vex_doc)


def vex_document(built, manifest_digest: str, repository: str) -> bytes:
    """The image's OpenVEX document (b"" when its gosu was not scanned); `repository` is HOST/REPO."""
    from builder.image.audit import openvex
    p = built.plan
    if p.scan is None:
        return b""
    return openvex.document(p.scan, repository, manifest_digest, p.target.arch.dpkg, "github.com/tianon/gosu",
                            p.gosu.module_version, p.gosu.version, p.gosu.go_version, f"base-gosu ({p.source_url})")
