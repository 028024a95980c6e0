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


def documents(built, manifest_digest: str, repository: str = "", registry_for=None,
              run_url: str | None = None) -> tuple[bytes, bytes]:
    """(CycloneDX SBOM JSON, in-toto provenance JSON) of one assembled image (a make.Built) whose manifest
    is `manifest_digest`; `repository` names the subject (default: the image's own repository)."""
    from builder.image.assembly import load
    from builder.core.emulation import native_arch
    from builder.image.audit import facts, provenance, sbom
    if manifest_digest != built.image.digest:
        raise ValueError(f"{built.tag}: manifest {manifest_digest[:19]} is not this image's "
                         f"({built.image.digest[:19]})")
    f = facts.gather(built, registry_for or load.registry_client({}), native_arch())
    run = provenance.ci_run_url() if run_url is None else run_url
    return sbom.document(f), provenance.document(f, repository or f.title.split(":")[0], run)


def attach(registry, repo: str, built, subject: dict, registry_for=None, run_url: str | None = None) -> Attached:
    """Push the image's SBOM and provenance as referrers of `subject` (its manifest, already pushed)."""
    from builder.image.audit import provenance, referrers, sbom
    sbom_doc, prov_doc = documents(built, subject["digest"], repo, registry_for, run_url)
    created = built.labels.get("org.opencontainers.image.created", "")
    return Attached(referrers.attach(registry, repo, subject, sbom.MEDIA_TYPE, sbom_doc, created),
                    referrers.attach(registry, repo, subject, provenance.MEDIA_TYPE, prov_doc, created),
                    sbom_doc, prov_doc)
