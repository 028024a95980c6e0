"""Signing with Debian's cosign against real loopback registries (htpasswd), and the tamper matrix."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from builder.core import oci
from builder import shipping
from builder.shipping import PublishOptions
from builder.publish import push as pub, signing, attest as statements, tags
from builder.consumer import verify as trustcheck
from builder.config.settings import Destination
from builder.core.registry import OCI_INDEX, Registry

from tests.conftest import ROOT
from tests.support.engine import ARCHES, project_config, rig  # noqa: F401 - fixture
from tests.support.registries import AuthRegistry, Fault, Proxy

pytestmark = pytest.mark.engine

REPO = project_config().images["repository"]
PASSWORD = "sign-pass-42"


def make_key(cosign: Path, prefix: Path, password: str) -> tuple[Path, Path]:
    subprocess.run([str(cosign), "generate-key-pair", "--output-key-prefix", str(prefix)], check=True,
                   env={**os.environ, "COSIGN_PASSWORD": password}, capture_output=True, timeout=60)
    return prefix.with_suffix(".key"), prefix.with_suffix(".pub")


@dataclasses.dataclass
class Signed:
    reg: AuthRegistry
    key: Path
    pub: Path
    other_pub: Path
    index: str
    children: dict[str, str]   # arch -> digest
    log: str

    def client(self, **kw) -> Registry:
        return self.reg.client(**kw)

    def signer(self, password: str = PASSWORD, cosign: Path | None = None) -> signing.Signer:
        return signing.Signer(cosign, signing.Identity(key=str(self.key)), {**os.environ, "COSIGN_PASSWORD": password})


def publish_signed(rig, client: Registry, repo: str, signer, log) -> tags.Report:
    dest = Destination(client.host, repo)
    children = [pub.push_child(client, dest, b, log)[0] for b in [rig.built("alpine", a) for a in ARCHES]]
    return shipping.assemble(children, client, dest, [("alpine", "3.20", a) for a in ARCHES], log,
                             PublishOptions(allow_trial=True, allow_eol=True, signer=signer))


@pytest.fixture(scope="module")
def signed(rig, tmp_path_factory):
    """alpine amd64 + arm64 published to an htpasswd registry, signed and attested with a password-protected key."""
    tmp = tmp_path_factory.mktemp("signing")
    key, pub_key = make_key(rig.cosign, tmp / "release", PASSWORD)
    _, other_pub = make_key(rig.cosign, tmp / "stranger", "other-pass")
    reg = AuthRegistry(tmp / "registry")
    try:
        s = Signed(reg, key, pub_key, other_pub, "", {}, "")
        log = io.StringIO()
        report = publish_signed(rig, s.client(), REPO, s.signer(cosign=rig.cosign), log)
        s.index = report.layouts[0].index_digest
        s.children = {c.arch: c.digest for c in report.children}
        s.log = log.getvalue()
        yield s
    finally:
        with contextlib.suppress(Exception):
            reg.stop()


def checker(rig, s: Signed, repo: str = REPO, keys=None) -> trustcheck.Checker:
    trust = trustcheck.Trust(tuple(str(k) for k in (keys or [s.pub])))
    return trustcheck.Checker(rig.cosign, trust, s.client(), repo)


def failures(rig, s: Signed, repo: str = REPO, keys=None, ref: str = "alpine") -> list[tuple[str, str, str]]:
    _, rows = trustcheck.check(checker(rig, s, repo, keys), ref)
    return [(r.check, r.what, r.problem) for r in rows if not r.ok]


def cosign_cli(rig, s: Signed, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Debian's cosign as a user runs it, logged in through a DOCKER_CONFIG as `docker login` leaves it."""
    config = tmp_path / "docker-config"
    if not (config / "config.json").exists():
        s.reg.logged_in_engine(config)
    return subprocess.run([str(rig.cosign), *args, "--allow-http-registry"], capture_output=True, text=True,
                          env={**os.environ, "DOCKER_CONFIG": str(config)}, timeout=120)


def cosign_verify(rig, s, tmp_path, ref: str, key: Path | None = None, kind: str | None = None):
    cmd = ("verify-attestation", "--type", kind) if kind else ("verify",)
    return cosign_cli(rig, s, tmp_path, *cmd, "--key", str(key or s.pub), "--insecure-ignore-tlog=true", ref)


def test_publish_signs_and_attests_every_manifest_then_verify_passes_and_noop_signs_nothing(rig, signed, tmp_path):
    s = signed
    lines = s.log.splitlines()
    signs = [i for i, ln in enumerate(lines) if ln.startswith("sign:")]
    tags = [i for i, ln in enumerate(lines) if ln.startswith("publish:")]
    # Every child signed and attested, then the index signed, and only then the tags.
    assert len(signs) == 5 and max(signs) < min(tags), s.log
    assert lines[max(signs)].startswith(f"sign: {s.reg.host}/{REPO}@{s.index} signed"), s.log
    assert s.log.count(" attested (cyclonedx, slsaprovenance1)") == 2
    assert PASSWORD not in s.log and s.reg.password not in s.log

    digest, rows = trustcheck.check(checker(rig, s), "alpine")
    assert digest == s.index and all(r.ok for r in rows), trustcheck.table("alpine", digest, rows)
    assert len(rows) == 1 + 2 * 4

    # `invoke verify` as a downstream team runs it, with the registry's credentials.
    env = {"REGISTRY_USERNAME": s.reg.user, "REGISTRY_PASSWORD": s.reg.password}
    p = subprocess.run([".venv/bin/invoke", "verify", f"{s.reg.host}/{REPO}:alpine", "--key", str(s.other_pub),
                        "--key", str(s.pub)], cwd=ROOT, capture_output=True, text=True, env={**os.environ, **env},
                       timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "9/9 checks hold" in p.stdout and s.reg.password not in p.stdout + p.stderr

    # Debian's cosign, by hand: the signatures and both attestations.
    assert cosign_verify(rig, s, tmp_path, f"{s.reg.host}/{REPO}:alpine").returncode == 0
    for arch, child in s.children.items():
        ref = f"{s.reg.host}/{REPO}@{child}"
        assert cosign_verify(rig, s, tmp_path, ref).returncode == 0, arch
        for kind in signing.ATTESTATIONS:
            p = cosign_verify(rig, s, tmp_path, ref, kind=kind)
            assert p.returncode == 0, (arch, kind, p.stderr)

    # A republish of the same images (children already there and signed, index unchanged) signs nothing new.
    signer, log = s.signer(cosign=rig.cosign), io.StringIO()
    report = publish_signed(rig, s.client(), REPO, signer, log)
    assert report.moved == [] and signer.signed == [] and "sign:" not in log.getvalue(), log.getvalue()


def test_wrong_password_or_refused_signature_fails_with_one_error_and_moves_no_tag(rig, signed, tmp_path):
    s, repo = signed, f"{REPO}-refused"
    with pytest.raises(signing.SigningError) as e:
        publish_signed(rig, s.client(), repo, s.signer("wrong-pass-77", rig.cosign), io.StringIO())
    assert f"opening signing key {s.key} (its password comes from COSIGN_PASSWORD) failed with key {s.key}: " \
           "cosign: " in str(e.value)
    assert "wrong-pass-77" not in str(e.value)
    assert s.client().get_manifest(repo, "alpine") is None

    proxy = Proxy(s.reg.host, [Fault("PUT", r"/manifests/sha256-[0-9a-f]+\.sig$", 500, times=999)])
    try:
        with pytest.raises(signing.SigningError, match=rf"signing {re.escape(proxy.host)}/{repo}@sha256:\S+ failed "
                                                       rf"with key {re.escape(str(s.key))}: cosign: "):
            publish_signed(rig, s.client(host=proxy.host, retries=0), repo, s.signer(cosign=rig.cosign),
                           io.StringIO())
    finally:
        proxy.close()
    assert all(s.client().get_manifest(repo, t) is None for t in tags.tags_for("alpine", "3.20", rig.mirror.version))


def test_keyless_needs_the_runners_oidc_identity_and_asks_cosign_for_a_certificate(rig):
    signer = signing.Signer(rig.cosign, signing.Identity(keyless=True), {"PATH": os.environ["PATH"]})
    with pytest.raises(signing.SigningError, match=r"keyless signing needs the CI runner's OIDC identity.*"
                                                   r"permissions: id-token: write.*Nothing was pushed"):
        signer.preflight()
    assert signer.identity_flags() == [], "no --key and no --tlog-upload=false: Fulcio certificate, Rekor entry"
    signing.Signer(rig.cosign, signing.Identity(keyless=True),
                   {"ACTIONS_ID_TOKEN_REQUEST_URL": "http://127.0.0.1:9/token"}).preflight()
    assert signing.choose("", True, False, False, Path("x"), "ghcr.io") == signing.Identity(keyless=True)


# ---- tamper matrix -------------------------------------------------------------------------------------------------

def copy(client: Registry, src: str, ref: str, dst: str, dst_ref: str | None = None, sigs=("sig", "att")) -> str:
    """Copy a manifest (an index with its children) between repositories of one registry, blobs mounted;
    with its signature and attestation tags when `sigs` names them."""
    body, media_type, digest = client.get_manifest(src, ref)
    doc = json.loads(body)
    for m in doc.get("manifests", []):
        copy(client, src, m["digest"], dst, sigs=sigs)
    for d in ([doc["config"]] if "config" in doc else []) + doc.get("layers", []):
        if not client.blob_exists(dst, d["digest"]):
            assert client.mount_blob(dst, d["digest"], (src,))
    client.put_manifest(dst, dst_ref or ref, body, media_type)
    for suffix in sigs:
        if signing.has(client, src, digest, suffix):
            copy(client, src, signing.sig_tag(digest, suffix), dst, sigs=())
    return digest


def republish(rig, s: Signed, repo: str, unsigned: str = "", attest=None) -> None:
    """The signed images again in `repo`, signed and attested there by the trusted key (but `unsigned`'s
    signature); `attest(digest)` may give a per-arch manifest's documents instead of the real ones."""
    client, signer = s.client(), s.signer(cosign=rig.cosign)
    copy(client, REPO, "alpine", repo, sigs=())
    for digest in [*s.children.values(), s.index]:
        ref = f"{s.reg.host}/{repo}@{digest}"
        if digest != unsigned:
            signer.sign(client, ref)
        if digest != s.index:
            docs = (attest and attest(digest)) or statements.read_back(client, REPO, digest)
            for kind, predicate in docs.items():
                signer.attest(client, ref, kind, predicate)


def test_tamper_matrix(rig, signed, tmp_path):
    s, client = signed, signed.client()
    amd, arm = s.children["amd64"], s.children["arm64"]
    src = f"{s.reg.host}/{REPO}"

    # 1. The tag moved to an unsigned image (same signed children, another index).
    t1 = f"{REPO}-t1"
    republish(rig, s, t1)
    assert failures(rig, s, t1) == []
    index = json.loads(client.get_manifest(t1, "alpine")[0])
    index["annotations"]["org.opencontainers.image.ref.name"] = "moved"
    client.put_manifest(t1, "alpine", oci.canonical(index), OCI_INDEX)
    assert failures(rig, s, t1) == [("signature", "index", f"unsigned: no signature "
                                     f"({signing.sig_tag(client.get_manifest(t1, 'alpine')[2])} is absent)")]
    assert cosign_verify(rig, s, tmp_path, f"{s.reg.host}/{t1}:alpine").returncode != 0

    # 2. A signature by a key that is not trusted.
    got = failures(rig, s, keys=[s.other_pub])
    assert ("signature", "index") == got[0][:2] and got[0][2].startswith(
        f"not signed by a trusted key(s) {s.other_pub} (")
    assert {f[:2] for f in got} == {("signature", "index")} | {
        (c, w) for w in ("linux/amd64", "linux/arm64/v8") for c in
        ("signature", "attestation cyclonedx", "attestation slsaprovenance1", "gosu sha256: SBOM = label")}
    assert cosign_verify(rig, s, tmp_path, f"{src}:alpine", key=s.other_pub).returncode != 0

    # 3. The index signed, one per-arch manifest not.
    t3 = f"{REPO}-t3"
    republish(rig, s, t3, unsigned=arm)
    assert failures(rig, s, t3) == [("signature", "linux/arm64/v8",
                                     f"unsigned: no signature ({signing.sig_tag(arm)} is absent)")]
    assert cosign_verify(rig, s, tmp_path, f"{s.reg.host}/{t3}:alpine").returncode == 0, "cosign checks the index"
    assert cosign_verify(rig, s, tmp_path, f"{s.reg.host}/{t3}@{arm}").returncode != 0

    # 4. An attestation whose subject is another image (arm64's, under amd64's .att tag).
    t4 = f"{REPO}-t4"
    republish(rig, s, t4)
    copy(client, t4, signing.sig_tag(arm, "att"), t4, signing.sig_tag(amd, "att"), sigs=())
    got = failures(rig, s, t4)
    assert [f[:2] for f in got] == [("attestation cyclonedx", "linux/amd64"),
                                    ("attestation slsaprovenance1", "linux/amd64"),
                                    ("gosu sha256: SBOM = label", "linux/amd64")], got
    assert got[0][2] == "its subject is another image, not this manifest (cosign: no matching subject digest found)"
    cosign_att = cosign_verify(rig, s, tmp_path, f"{s.reg.host}/{t4}@{amd}", kind="cyclonedx")
    assert cosign_att.returncode != 0 and "no matching subject digest found" in cosign_att.stderr

    # 5. An SBOM whose gosu sha256 disagrees with the label (attested by the trusted key all the same).
    t5 = f"{REPO}-t5"

    def wrong_sbom(digest):
        if digest != amd:
            return None
        docs = statements.read_back(client, REPO, digest)
        [gosu] = [c for c in docs["cyclonedx"]["components"] if c.get("bom-ref") == "gosu"]
        gosu["hashes"][0]["content"] = "0" * 64
        return docs
    republish(rig, s, t5, attest=wrong_sbom)
    label = rig.built("alpine", "amd64").fetched.sha256
    assert failures(rig, s, t5) == [("gosu sha256: SBOM = label", "linux/amd64",
                                     f"the SBOM lists gosu sha256 {'0' * 64}, the image's label "
                                     f"org.base-gosu.gosu.sha256 says {label}")]
    assert cosign_verify(rig, s, tmp_path, f"{s.reg.host}/{t5}@{amd}", kind="cyclonedx").returncode == 0, \
        "cosign cannot know: the attestation is genuine, its content is wrong"

    # 6. A signature payload for another repository (signatures copied over with the images).
    t6 = f"{REPO}-t6"
    copy(client, REPO, "alpine", t6)
    got = failures(rig, s, t6)
    assert [f[:2] for f in got] == [("signature", "index"), ("signature", "linux/amd64"),
                                    ("signature", "linux/arm64/v8")], got
    assert got[0][2] == f"the signature payload is for {src}, not {s.reg.host}/{t6}: a signature copied from " \
                        "another repository (a mirror of it? name where it was signed with --origin HOST/REPO)"
    cosign_copied = cosign_verify(rig, s, tmp_path, f"{s.reg.host}/{t6}:alpine")
    print(f"cosign verify on a signature copied from another repository: exit {cosign_copied.returncode}")
    assert cosign_copied.returncode == 0, "cosign itself does not compare the payload's repository"


def test_local_key_pair_is_made_once_and_opens_without_a_password(rig, tmp_path):
    log = io.StringIO()
    pub_key = signing.make_local_key(rig.cosign, tmp_path / "local", log)
    assert pub_key == tmp_path / "local.pub" and f"public key {pub_key}" in log.getvalue()
    made = (tmp_path / "local.key").read_bytes()
    again = io.StringIO()
    assert signing.make_local_key(rig.cosign, tmp_path / "local", again) == pub_key and again.getvalue() == ""
    assert (tmp_path / "local.key").read_bytes() == made
    identity = signing.choose("", False, False, True, tmp_path / "local", "127.0.0.1:5000")
    assert identity == signing.Identity(key=str(tmp_path / "local.key"), local=True)
    # A COSIGN_PASSWORD meant for another key does not get in the way of the local one.
    signing.Signer(rig.cosign, identity, {**os.environ, "COSIGN_PASSWORD": "for-another-key"}).preflight()
