"""The CycloneDX SBOM of one image: the image, gosu with its Go toolchain and modules, the entrypoint, the base's
OS packages.

Deterministic for the same image: the serial number is a UUID derived from
the manifest digest, the timestamp is the image's build epoch, every
component's bom-ref is its package URL (or a fixed name), so a republish of
the same image makes the same bytes and so the same referrer digest.
"""

from __future__ import annotations

import datetime as dt
import uuid

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output import make_outputter
from cyclonedx.schema import OutputFormat, SchemaVersion
from packageurl import PackageURL

from builder.image.assembly import append
from builder.image.audit.facts import Facts

MEDIA_TYPE = "application/vnd.cyclonedx+json"
SCHEMA = SchemaVersion.V1_6   # what document() writes (and what the tests validate against)
P = "org.base-gosu"   # property names are namespaced, as CycloneDX's property taxonomy asks


def _props(**kv: str) -> list[Property]:
    return [Property(name=f"{P}:{k.replace('_', '-')}", value=v) for k, v in sorted(kv.items()) if v]


def _sha256(hexdigest: str) -> list[HashType]:
    return [HashType(alg=HashAlgorithm.SHA_256, content=hexdigest)] if hexdigest else []


def _purl(text: str) -> PackageURL:
    return PackageURL.from_string(text)


def go_semver(version: str) -> str:
    """A Go module version for a plain release number: 1.14 -> v1.14.0 (what Go's vulnerability data uses)."""
    v = version.split("-")[0].split("+")[0].removeprefix("v")
    parts = (v.split(".") + ["0", "0"])[:3]
    return "v" + ".".join(parts)


def gosu_component(f: Facts) -> tuple[Component, list[Component]]:
    """gosu itself, and what it is made of (Go's standard library, its modules)."""
    info, main = f.go, f.go.main if f.go else None
    if main and main.version and main.version != "(devel)":
        version, how = main.version, "the binary's main module version"
    else:
        version = go_semver(f.gosu.version)
        how = (f"gosu's upstream version: the binary has no main module version "
               f"({'GOPATH build' if not main else main.version})")
    module = main.path if main else (info.path if info and info.path else "github.com/tianon/gosu")
    gosu = Component(
        type=ComponentType.APPLICATION, name=module, version=version, bom_ref="gosu",
        purl=_purl(f"pkg:golang/{module}@{version}"), hashes=_sha256(f.gosu.sha256),
        properties=_props(gosu_version=f.gosu.version, gosu_source=f.gosu.kind, gosu_trust_root=f.gosu.trust_root,
                          gosu_trust_pinned=str(f.gosu.pinned).lower(), gosu_module_version_from=how,
                          gosu_path="/usr/local/bin/gosu", go_version=info.go_version if info else "",
                          **{f"gosu_{k}": v for k, v in f.gosu.details if k in ("suite", "package", "deb")}))
    parts = []
    if info:
        std = info.go_version.removeprefix("go")
        parts.append(Component(type=ComponentType.LIBRARY, name="stdlib", version=f"v{std}",
                               bom_ref=f"pkg:golang/stdlib@v{std}", purl=_purl(f"pkg:golang/stdlib@v{std}"),
                               properties=_props(go_version=info.go_version)))
        for d in info.deps:
            use = d.replaced_by if d.replaced_by and d.replaced_by.version else d
            space, _, name = use.path.rpartition("/")
            purl = PackageURL("golang", space or None, name, use.version)  # "+incompatible" encoded once, here
            parts.append(Component(type=ComponentType.LIBRARY, name=use.path, version=use.version,
                                   bom_ref=purl.to_string(), purl=purl, properties=_props(go_sum=use.sum, replaces=(
                                       f"{d.path} {d.version}" if use is not d else ""))))
    for c in f.rebuilt:
        if c["purl"].startswith("pkg:deb/"):
            purl = _purl(c["purl"])
            parts.append(Component(type=ComponentType.LIBRARY, name=c["name"], version=c["version"],
                                   bom_ref=purl.to_string(), purl=purl, hashes=_sha256(c.get("sha256", "")),
                                   properties=_props(role="built gosu (rebuild source)")))
    return gosu, parts


def nss_wrapper_component(f: Facts) -> list[Component]:
    """Debian's libnss-wrapper, which the glibc images carry for arbitrary uids (none on Alpine)."""
    n = f.nss_wrapper
    if not n:
        return []
    return [Component(type=ComponentType.LIBRARY, name=n.package, version=n.version, bom_ref=n.purl,
                      purl=_purl(n.purl), hashes=_sha256(n.sha256),
                      properties=_props(path=append.NSS_WRAPPER, deb_sha256=n.deb_sha256, suite=n.suite,
                                        role="LD_PRELOAD library the entrypoint uses to name an arbitrary uid"))]


def os_components(f: Facts) -> list[Component]:
    out = []
    if f.distro.id:
        out.append(Component(type=ComponentType.OPERATING_SYSTEM, name=f.distro.id, version=f.distro.version_id,
                             bom_ref=f"os:{f.distro.id}-{f.distro.version_id}",
                             description=f.distro.pretty_name or None,
                             properties=_props(package_database=f.package_db, standin_for=f.standin_for)))
    for p in f.packages:
        out.append(Component(type=ComponentType.LIBRARY, name=p.name, version=p.version, bom_ref=p.purl,
                             purl=_purl(p.purl), properties=_props(source_package=p.source, license=p.license)))
    return out


def platform_name(p: dict) -> str:
    return "/".join(p[k] for k in ("os", "architecture", "variant") if p.get(k))


def build(f: Facts) -> Bom:
    created = dt.datetime.fromtimestamp(f.epoch, dt.timezone.utc)
    image = Component(
        type=ComponentType.CONTAINER, name=f.title, version=f.manifest_digest, bom_ref=f.manifest_digest,
        purl=_purl(str(PackageURL("oci", None, f.title.split(":")[0].rsplit("/", 1)[-1], f.manifest_digest,
                                  {"arch": f.platform["architecture"]}))),
        properties=_props(flavor=f.flavor, platform=platform_name(f.platform), base_name=f.base_name,
                          base_digest=f.base_digest, base_platform_digest=f.base_platform_digest,
                          base_standin_for=f.standin_for, trial=f.trial, revision=f.revision))
    bom = Bom(serial_number=uuid.uuid5(uuid.NAMESPACE_URL, f"oci:{f.manifest_digest}"),
              metadata=BomMetaData(component=image, timestamp=created))
    gosu, gosu_parts = gosu_component(f)
    # The core keeps the ref "entrypoint"; each file it sources is a file component of its own.
    entrypoint = [Component(type=ComponentType.FILE, name=f"/{path}",
                            bom_ref="entrypoint" if source == "images/entrypoint.sh" else f"entrypoint:{path}",
                            hashes=_sha256(sha), properties=_props(source=f"{source} at {f.revision}"))
                  for path, source, sha in f.entrypoint]
    os_parts, nss = os_components(f), nss_wrapper_component(f)
    for c in (gosu, *gosu_parts, *entrypoint, *nss, *os_parts):
        bom.components.add(c)
    bom.register_dependency(image, [gosu, *entrypoint, *nss, *os_parts])
    bom.register_dependency(gosu, gosu_parts)
    return bom


def document(f: Facts) -> bytes:
    return make_outputter(build(f), OutputFormat.JSON, SCHEMA).output_as_string(indent=2).encode() + b"\n"
