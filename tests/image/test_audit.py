"""The audit stage: package databases, the SBOM and provenance of real images, referrers on a real registry."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import re
import shutil
import tarfile
import uuid

import pytest
from cyclonedx.validation.json import JsonStrictValidator

from builder.image import audit
from builder.publish import push as pub
from builder.image.assembly import append
from builder.image.assembly.store import Store
from builder.image.model import IMAGES
from builder.image.audit import basepkgs, goinfo, packages, provenance, referrers, sbom
from builder.consumer import show
from builder.config.settings import Destination
from builder.core.clients import Clients
from builder.core.registry import OCI_MANIFEST, RegistryError, sha256_digest

from tests.conftest import skip_or_fail
from tests.support.engine import rig  # noqa: F401 - fixture
from tests.support.registries import AuthRegistry, Fault, Proxy

DEBIAN12 = packages.Distro("debian", "12")
STATUS = """Package: libc6
Status: install ok installed
Architecture: amd64
Source: glibc (2.36-9+deb12u7)
Version: 2.36-9+deb12u7
Description: GNU C Library
 continued description line

Package: old-thing
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: perl-base
Status: install ok installed
Architecture: amd64
Version: 1:5.36.0-7+deb12u1
"""
APK_DB = """C:Q1abc=
P:musl
V:1.2.5-r0
A:x86_64
L:MIT
o:musl

P:busybox
V:1.36.1-r29
A:x86_64
L:GPL-2.0-only
o:busybox
"""


def test_dpkg_status_installed_packages_with_purls():
    got = packages.dpkg(STATUS, DEBIAN12)
    assert [(p.name, p.version, p.source) for p in got] == [("libc6", "2.36-9+deb12u7", "glibc"),
                                                            ("perl-base", "1:5.36.0-7+deb12u1", "")]
    assert got[0].purl == "pkg:deb/debian/libc6@2.36-9%2Bdeb12u7?arch=amd64&distro=debian-12"
    assert got[1].purl.startswith("pkg:deb/debian/perl-base@1:5.36.0-7%2Bdeb12u1?"), "epoch kept, + encoded"


def test_apk_installed_db_and_os_release():
    distro = packages.os_release('NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.20.3\n# comment\n')
    assert distro == packages.Distro("alpine", "3.20.3", "")
    got = packages.apk(APK_DB, distro)
    assert [(p.name, p.version, p.arch, p.license) for p in got] == [
        ("musl", "1.2.5-r0", "x86_64", "MIT"), ("busybox", "1.36.1-r29", "x86_64", "GPL-2.0-only")]
    assert got[0].purl == "pkg:apk/alpine/musl@1.2.5-r0?arch=x86_64&distro=alpine-3.20.3"


def _layer(*entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in entries:
            ti = tarfile.TarInfo(name)
            if isinstance(data, tuple):  # ("->", target): a symlink
                ti.type, ti.linkname = tarfile.SYMTYPE, data[1]
                t.addfile(ti)
            elif data is None:
                ti.type = tarfile.DIRTYPE
                t.addfile(ti)
            else:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), mtime=0)


def test_layers_in_order_with_whiteouts_status_d_and_symlinked_os_release(tmp_path):
    store = Store(tmp_path)
    lower = _layer(("usr/lib/os-release", b"ID=debian\nVERSION_ID=12\n"),
                   ("etc/os-release", ("->", "../usr/lib/os-release")),
                   ("var/lib/dpkg/status", STATUS.encode()),
                   ("var/lib/dpkg/status.d/base-files", b"Package: base-files\nVersion: 12.4\nArchitecture: amd64\n"),
                   ("var/lib/dpkg/status.d/base-files.md5sums", b"abc  etc/issue\n"))
    # The upper layer deletes dpkg's status file and replaces status.d wholesale (an opaque directory).
    upper = _layer(("var/lib/dpkg/.wh.status", b""), ("var/lib/dpkg/status.d", None),
                   ("var/lib/dpkg/status.d/.wh..wh..opq", b""),
                   ("var/lib/dpkg/status.d/tzdata", b"Package: tzdata\nVersion: 2024a-0+deb12u1\nArchitecture: all\n"))
    layers = [{"digest": store.put(b)} for b in (lower, upper)]
    distro, found, db = basepkgs.installed(basepkgs.read(store, None, "unused", layers))
    assert distro == packages.Distro("debian", "12", "") and db == "dpkg"
    assert [(p.name, p.version) for p in found] == [("tzdata", "2024a-0+deb12u1")]
    distro, found, _ = basepkgs.installed(basepkgs.read(store, None, "unused", layers[:1]))
    assert [p.name for p in found] == ["base-files", "libc6", "perl-base"]


def test_go_semver_for_upstream_versions():
    assert [sbom.go_semver(v) for v in ("1.14", "1.17-3", "v1.19.0", "1.14-debian")] == \
        ["v1.14.0", "v1.17.0", "v1.19.0", "v1.14.0"]


# Engine tests: the session's real images (test-mirror gosu: Debian's 1.14 build, a GOPATH build).

def _validate(doc: bytes) -> None:
    error = JsonStrictValidator(sbom.SCHEMA).validate_str(doc.decode())
    assert error is None, error


def _components(doc: dict) -> dict[str, dict]:
    return {c["bom-ref"]: c for c in doc["components"]}


def _prop(component: dict, name: str) -> str:
    return {p["name"]: p["value"] for p in component.get("properties", [])}.get(f"org.base-gosu:{name}", "")


def _in_image(rig, built, entrypoint: str, *args: str) -> str:
    return rig.engine.run("run", "--rm", "--network", "none", "--entrypoint", entrypoint, built.tag, *args).stdout


@pytest.mark.engine
def test_sbom_of_alpine_matches_what_the_image_holds(rig):
    b = rig.built("alpine", "amd64")
    sbom_doc, prov_doc = audit.documents(b, b.image.digest)
    _validate(sbom_doc)
    assert audit.documents(b, b.image.digest) == (sbom_doc, prov_doc), "same image, same bytes"
    doc = json.loads(sbom_doc)
    assert doc["serialNumber"] == f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, 'oci:' + b.image.digest)}"
    assert doc["metadata"]["component"]["version"] == b.image.digest
    parts = _components(doc)
    info = goinfo.read(b.fetched.path)
    gosu = parts["gosu"]
    assert gosu["hashes"][0]["content"] == b.labels["org.base-gosu.gosu.sha256"] == b.fetched.sha256
    assert _prop(gosu, "go-version") == info.go_version == b.labels["org.base-gosu.gosu.go-version"]
    assert f"pkg:golang/stdlib@v{info.go_version.removeprefix('go')}" in parts
    # Debian's 1.14 is a GOPATH build: no main module, so the upstream version stands in, and says so.
    assert info.main is None and b.labels["org.base-gosu.gosu.module-version"] == ""
    assert gosu["purl"] == "pkg:golang/github.com/tianon/gosu@v1.14.0" and "GOPATH" in _prop(
        gosu, "gosu-module-version-from")
    # Differential: what apk itself says is installed, in the running image.
    apk_says = set(_in_image(rig, b, "apk", "info", "-v").split())
    ours = {f"{c['name']}-{c['version']}" for c in parts.values() if c.get("purl", "").startswith("pkg:apk/")}
    assert ours == apk_says and {"musl", "busybox"} <= {n.rsplit("-", 2)[0] for n in ours}
    assert b.plan.nss_wrapper is None and not any(c["name"] == "libnss-wrapper" for c in parts.values())
    statement = json.loads(prov_doc)
    assert statement["subject"][0]["digest"] == {"sha256": b.image.digest.split(":")[1]}
    assert statement["predicateType"] == provenance.PREDICATE
    deps = {d["name"]: d for d in statement["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert deps["gosu"]["digest"]["sha256"] == b.fetched.sha256
    assert deps["gosu"]["annotations"]["trustRoot"] == rig.mirror.fingerprint
    assert deps["base"]["digest"]["sha256"] == b.base.digest.split(":")[1]
    # The entrypoint and every file it sources: a file component and a dependency each, as images/ has them.
    shipped = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in IMAGES.glob("entrypoint*.sh")}
    assert len(shipped) == 4
    assert {c["name"]: c["hashes"][0]["content"] for ref, c in parts.items() if ref.startswith("entrypoint")} == {
        f"/{append.image_path(name)}": sha for name, sha in shipped.items()}
    assert parts["entrypoint"]["name"] == "/usr/local/bin/entrypoint"
    assert {d["uri"].rsplit("#images/", 1)[1]: d["digest"]["sha256"] for d in deps.values()
            if d["name"].startswith("entrypoint")} == shipped


@pytest.mark.engine
def test_sbom_of_the_ubuntu_standin_names_debian_packages(rig):
    b = rig.built("ubuntu", "amd64")
    sbom_doc, prov_doc = audit.documents(b, b.image.digest)
    _validate(sbom_doc)
    doc = json.loads(sbom_doc)
    parts = _components(doc)
    # nss_wrapper: a Debian package's library, not dpkg-installed; its hash is the file's in the image.
    n = b.plan.nss_wrapper
    nss = parts.pop(f"pkg:deb/debian/libnss-wrapper@{n.version}?arch=amd64")
    in_image = _in_image(rig, b, "sha256sum", "/usr/local/lib/base-gosu/libnss_wrapper.so").split()[0]
    assert nss["hashes"][0]["content"] == n.sha256 == in_image == b.labels["org.base-gosu.nss-wrapper.sha256"]
    assert _prop(nss, "deb-sha256") == n.deb_sha256 and _prop(nss, "suite") == "bookworm"
    assert nss["bom-ref"] in {r for d in doc["dependencies"] if d["ref"] == doc["metadata"]["component"]["bom-ref"]
                              for r in d.get("dependsOn", [])}
    deps = {d["name"]: d for d in json.loads(prov_doc)["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert deps["nss_wrapper"]["digest"] == {"sha256": n.sha256}
    debs = {(c["name"], c["version"]) for c in parts.values() if c.get("purl", "").startswith("pkg:deb/debian/")}
    dpkg_says = _in_image(rig, b, "dpkg-query", "-W", "-f", "${Package} ${Version}\\n")
    assert debs == {tuple(line.split(" ", 1)) for line in dpkg_says.splitlines()}
    assert not any("pkg:deb/ubuntu" in ref for ref in parts), "the stand-in is Debian underneath"
    assert _prop(doc["metadata"]["component"], "base-standin-for") == "ubuntu:24.04"
    # The stand-in's Debian (trixie for 24.04: local.standin_suites) is the OS the SBOM names.
    [os_part] = [c for ref, c in parts.items() if ref.startswith("os:debian-")]
    assert _prop(os_part, "standin-for") == "ubuntu:24.04"


@pytest.fixture
def reg(rig, tmp_path):
    if not shutil.which("docker-registry"):
        skip_or_fail("needs Debian's docker-registry (`invoke up` installs it)")
    r = AuthRegistry(tmp_path / "registry")
    yield r
    with contextlib.suppress(Exception):
        r.stop()


REPO = "h-audit/base-gosu"


def _push(client, built, log=None):
    return [pub.push_child(client, Destination(client.host, REPO), b, log or io.StringIO())[0] for b in built]


@pytest.mark.engine
def test_referrers_api_when_the_registry_has_it(rig, reg):
    b = rig.built("alpine", "amd64")
    proxy = Proxy(reg.host, referrers_api=True)
    try:
        via_api = reg.client(host=proxy.host)
        [child] = _push(via_api, [b])
        assert not [r for r in proxy.writes() if "/manifests/sha256-" in r[1]], "no tag schema with the API"
        found = referrers.referrers(via_api, REPO, child.digest)
        assert ("GET", f"/v2/{REPO}/referrers/{child.digest}", "referrers API") in proxy.requests
        assert sorted(d["artifactType"] for d in found) == [sbom.MEDIA_TYPE, provenance.MEDIA_TYPE]
        [s] = referrers.referrers(via_api, REPO, child.digest, sbom.MEDIA_TYPE)
        assert referrers.fetch(via_api, REPO, s) == audit.documents(b, b.image.digest)[0]
    finally:
        proxy.close()
    assert referrers.referrers(reg.client(), REPO, child.digest) == [], "the registry behind has neither"
    with pytest.raises(show.ShowError, match="carries no sbom"):
        show.show(reg.client(), REPO, child.digest, "sbom")


@pytest.mark.engine
def test_tag_schema_is_idempotent_and_checked(rig, reg):
    b = rig.built("alpine", "amd64")
    client = reg.client()
    [child] = _push(client, [b])
    tag = referrers.tag_for(child.digest)
    first = client.get_manifest(REPO, tag)
    assert first and len(json.loads(first[0])["manifests"]) == 2
    _push(client, [b])
    assert client.get_manifest(REPO, tag)[2] == first[2], "the same documents again change nothing"
    manifest = json.loads(client.get_manifest(REPO, json.loads(first[0])["manifests"][0]["digest"])[0])
    assert manifest["subject"]["digest"] == child.digest and manifest["config"]["mediaType"] == referrers.EMPTY_TYPE
    forged = {**json.loads(first[0])["manifests"][0], "digest": sha256_digest(b"not there")}
    with pytest.raises(RegistryError, match="missing or differs"):
        referrers.fetch(client, REPO, forged)


@pytest.mark.engine
def test_failed_image_push_leaves_no_referrer(rig, reg):
    b = rig.built("alpine", "amd64")
    proxy = Proxy(reg.host, [Fault("PUT", r"/manifests/sha256:", 500, times=99)])
    try:
        with pytest.raises(RegistryError):
            _push(reg.client(host=proxy.host, retries=0), [b])
        assert not [r for r in proxy.writes() if re.search(r"/manifests/sha256-", r[1])]
        assert all(r[2] == 500 for r in proxy.writes() if "/manifests/" in r[1])
    finally:
        proxy.close()
    assert reg.client().get_manifest(REPO, b.image.digest) is None
    assert referrers.referrers(reg.client(), REPO, b.image.digest) == []


def test_artifact_manifest_shape():
    subject = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + "a" * 64, "size": 7, "platform": {"os": "linux"}}
    m = json.loads(referrers.artifact_manifest(subject, sbom.MEDIA_TYPE, b"{}\n", "2026-01-01T00:00:00Z"))
    assert m["artifactType"] == sbom.MEDIA_TYPE and m["subject"] == {k: subject[k] for k in ("mediaType", "digest",
                                                                                               "size")}
    assert m["config"] == {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2, "data": "e30=",
                           "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"}
    assert m["layers"] == [{"mediaType": sbom.MEDIA_TYPE, "digest": sha256_digest(b"{}\n"), "size": 3,
                            "annotations": {"org.opencontainers.image.title": "sbom.cdx.json"}}]
    assert referrers.tag_for(subject["digest"]) == "sha256-" + "a" * 64


def test_builder_names_the_ci_run_only_when_there_is_one():
    env = {"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "org/base-gosu", "GITHUB_RUN_ID": "42",
           "GITHUB_RUN_ATTEMPT": "2"}
    assert provenance.ci_run_url(env) == "https://github.com/org/base-gosu/actions/runs/42/attempts/2"
    assert provenance.ci_run_url({k: v for k, v in env.items() if k != "GITHUB_RUN_ID"}) == ""


@pytest.mark.engine
def test_sbom_of_a_rebuilt_gosu_names_its_debian_inputs(rig):
    """The rebuild source's facts (what sources/rebuild.py records) on the session's image: still schema-valid."""
    import dataclasses
    from builder.image.audit import facts
    from builder.gosu.sources import rebuild
    b = rig.built("alpine", "amd64")
    f = facts.gather(b, Clients())
    deps = [["golang-golang-x-sys-dev", "0.50.0+dfsg-1~bpo13+1", "golang.org/x/sys",
             "v0.50.0-debian.0.50.0-dfsg-1-bpo13-1"]]
    gosu = dataclasses.replace(b.fetched, kind="rebuild", details=(
        ("package", "1.19-1"), ("suite", "unstable"), ("go_version", "go1.27.4"),
        ("go_package_version", "1.27.4-1~bpo13+1"), ("deps", json.dumps(deps)),
        ("toolchain_debs", json.dumps({"golang-1.27-go": "a" * 64, "golang-1.27-src": "b" * 64}))))
    f = dataclasses.replace(f, gosu=gosu, rebuilt=tuple(rebuild.components(gosu, "amd64")))
    doc = sbom.document(f)
    _validate(doc)
    refs = _components(json.loads(doc))
    assert "pkg:deb/debian/golang-1.27-go@1.27.4-1~bpo13%2B1?arch=amd64" in refs
    assert refs["pkg:deb/debian/golang-1.27-src@1.27.4-1~bpo13%2B1?arch=all"]["hashes"][0]["content"] == "b" * 64
    assert _prop(refs["gosu"], "gosu-source") == "rebuild"


@pytest.mark.engine
def test_sbom_names_the_modules_of_the_real_gosu_1_14(rig):
    """tianon's signed 1.14 (Go 1.16.7, the layout before Go 1.18): stdlib, runc and x/sys, with their sums."""
    import dataclasses
    from builder.image.audit import facts
    from tests.conftest import SHARED
    real = SHARED / "gosu-release" / "1.14" / "gosu-amd64"
    if not real.is_file():
        skip_or_fail(f"{real} not found")
    b = rig.built("alpine", "amd64")
    f = dataclasses.replace(facts.gather(b, Clients()), go=goinfo.read(real))
    doc = sbom.document(f)
    _validate(doc)
    refs = _components(json.loads(doc))
    assert {"pkg:golang/stdlib@v1.16.7", "pkg:golang/github.com/opencontainers/runc@v1.0.1",
            "pkg:golang/golang.org/x/sys@v0.0.0-20210817142637-7d9622a276b7"} <= set(refs)
    assert _prop(refs["pkg:golang/github.com/opencontainers/runc@v1.0.1"], "go-sum").startswith("h1:")
    assert refs["gosu"]["purl"] == "pkg:golang/github.com/tianon/gosu@v1.14.0", "main module is (devel)"
    assert "(devel)" in _prop(refs["gosu"], "gosu-module-version-from")
