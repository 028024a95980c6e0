"""Publish against a real docker-registry with htpasswd auth on 127.0.0.1."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from typing import Callable

import pytest
from cyclonedx.validation.json import JsonStrictValidator

from builder.image import model
from builder.local import setup as local
from builder.core import oci
from builder import pipeline, shipping
from builder.shipping import PublishOptions
from builder.publish import push as pub, tags as tagging
from builder.image.audit import goinfo, provenance, referrers, sbom
from builder.publish.push import PublishError
from builder.config.settings import Destination
from builder.core.registry import OCI_INDEX, AuthError, Registry, RegistryError, credentials_for, sha256_digest

from tests.conftest import ROOT
from tests.support.engine import ARCHES, UNAME, project_config, rig  # noqa: F401 - fixture
from tests.support.registries import AuthRegistry, Fault, Proxy, free_port

pytestmark = pytest.mark.engine

# The configured repository (INVOKE_IMAGES_REPOSITORY keeps engineers sharing an engine apart).
REPO = project_config().images["repository"]
# A second build of alpine that differs only in its inputs (the ops uid): the "already published" state.
OLD = dict(repository="base-gosu-test/uid10002", ops_uid=10002, ops_gid=10002)
PLATFORMS = {"amd64": "linux/amd64", "arm64": "linux/arm64/v8"}


@pytest.fixture
def reg(rig, tmp_path):
    r = AuthRegistry(tmp_path / "registry")
    yield r
    with contextlib.suppress(Exception):
        r.stop()


def tags(rig) -> tuple[str, str, str]:
    return tagging.tags_for("alpine", "3.20", rig.mirror.version)


def tag_digests(client: Registry, rig) -> dict[str, str | None]:
    return {t: (got[2] if (got := client.get_manifest(REPO, t)) else None) for t in tags(rig)}


def publish_built(built: list, client: Registry, engine, log=None):
    """publish after build and smoke, for images test_smoke already checked: push by digest, then assemble."""
    log = log or io.StringIO()
    dest = Destination(client.host, REPO)
    children = [pub.push_child(client, dest, b, log)[0] for b in built]
    return shipping.assemble(children, client, dest, [("alpine", b.target.flavor.release, b.target.arch.dpkg) for b in built], log,
                             PublishOptions(allow_trial=True, allow_eol=True))


def old_state(rig, reg) -> dict[str, str | None]:
    """Publish the uid-10002 alpine build; return the tags as they then are."""
    client = reg.client()
    publish_built([rig.built("alpine", a, **OLD) for a in ARCHES], client, rig.engine)
    before = tag_digests(client, rig)
    assert all(before.values())
    return before


def run_invoke(*args: str, env: dict) -> subprocess.CompletedProcess:
    mirror_config = ROOT / ".cache" / "test-mirror" / "invoke.yaml"
    return subprocess.run([sys.executable, "-m", "invoke", "-f", str(mirror_config), *args], cwd=ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=1200)


def test_publish_multiarch_index_three_tags_runnable_then_noop(rig, reg, tmp_path):
    engine = reg.logged_in_engine(tmp_path / "docker-config")
    creds = credentials_for(reg.host, {"DOCKER_CONFIG": str(tmp_path / "docker-config")})
    assert creds == (reg.user, reg.password), "config.json written by `docker login` is where creds come from"
    dest = Destination(reg.host, REPO)
    req = rig.request("alpine", "amd64,arm64")

    proxy = Proxy(reg.host)
    try:
        plan_log = io.StringIO()
        # The test mirror's gosu is trusted through a throwaway key: a trial image, refused by a
        # registry that is not this machine's own unless asked for, before anything is sent.
        with pytest.raises(PublishError) as refused:
            shipping.publish(req, rig.engine, Registry(proxy.host, creds, retries=1), Destination(proxy.host, REPO),
                             io.StringIO())
        assert f"{rig.cfg.images.repository}:alpine-3.20-amd64 is a trial image: gosu is trusted through key " \
               f"{rig.mirror.fingerprint}, which is not pinned in keys/" in str(refused.value)
        assert "--allow-trial" in str(refused.value) and "Nothing was pushed" in str(refused.value)
        assert proxy.writes() == []
        shipping.publish(req, rig.engine, Registry(proxy.host, creds, retries=1), Destination(proxy.host, REPO),
                         plan_log, PublishOptions(allow_trial=True, allow_eol=True, dry_run=True))
        assert proxy.writes() == [], "a dry run must not write to the registry"
        assert plan_log.getvalue().count("would build, smoke-test and push") == 2
        assert plan_log.getvalue().count(": create") == 3
    finally:
        proxy.close()

    client = Registry(reg.host, creds, retries=2, backoff=0.05)
    log = io.StringIO()
    report = shipping.publish(req, rig.engine, client, dest, log, PublishOptions(allow_trial=True, allow_eol=True))
    assert not report.noop and client.bytes_uploaded > 0
    digests = tag_digests(client, rig)
    assert len(set(digests.values())) == 1 and None not in digests.values(), digests
    index = json.loads(client.get_manifest(REPO, "alpine")[0])
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert {oci.platform_key(m["platform"]) for m in index["manifests"]} == set(PLATFORMS.values())
    assert reg.password not in log.getvalue()

    ref = dest.ref("alpine")
    try:
        for arch, platform in PLATFORMS.items():
            engine.pull(ref, platform)
            out = engine.run("run", "--rm", "--network", "none", "--platform", platform, ref,
                             "sh", "-c", "uname -m; id -un; gosu --version").stdout.split()
            assert out[:2] == [UNAME[arch], "ops"], out
            assert rig.mirror.version.split("-")[0] in out[2], out
    finally:
        engine.remove_image(ref)

    attached = {m["digest"]: check_referrers(client, m, rig) for m in index["manifests"]}
    shown = run_invoke("sbom", ref, "--platform", "linux/amd64", "--output", str(tmp_path / "sbom.json"),
                       env={"REGISTRY_USERNAME": reg.user, "REGISTRY_PASSWORD": reg.password})
    assert shown.returncode == 0, shown.stderr
    amd64 = next(m["digest"] for m in index["manifests"] if m["platform"]["architecture"] == "amd64")
    assert json.loads((tmp_path / "sbom.json").read_text())["metadata"]["component"]["version"] == amd64
    shown = run_invoke("provenance", ref, env={"REGISTRY_USERNAME": reg.user, "REGISTRY_PASSWORD": reg.password})
    assert shown.returncode == 0, shown.stderr
    assert {p: s["subject"][0]["digest"]["sha256"] for p, s in json.loads(shown.stdout).items()} == \
        {oci.platform_key(m["platform"]): m["digest"].split(":")[1] for m in index["manifests"]}

    again, log2 = Registry(reg.host, creds, retries=2, backoff=0.05), io.StringIO()
    report2 = shipping.publish(req, rig.engine, again, dest, log2, PublishOptions(allow_trial=True, allow_eol=True))
    assert report2.noop and again.bytes_uploaded == 0, log2.getvalue()
    assert "zero bytes pushed" in log2.getvalue()
    assert "smoke:" not in log2.getvalue(), "unchanged inputs are neither rebuilt nor smoke-tested"
    assert log2.getvalue().count("up to date, nothing to do") == 3
    assert tag_digests(again, rig) == digests
    assert {d: referrers.referrers(again, REPO, d) for d in attached} == attached, "a no-op attaches nothing"


def _apk_db(client: Registry, layers: list[dict]) -> dict[str, str]:
    """name -> version from the last of the base's layers that holds apk's database, read with tarfile."""
    found = {}
    for desc in layers:
        with tarfile.open(fileobj=io.BytesIO(client.get_blob(REPO, desc["digest"]))) as t:
            names = {ti.name.removeprefix("./"): ti for ti in t}
            if "lib/apk/db/installed" in names:
                text = t.extractfile(names["lib/apk/db/installed"]).read().decode()
                found = dict(re.findall(r"^P:(.+)\nV:(.+)$", text, re.M))
    return found


def check_referrers(client: Registry, desc: dict, rig) -> list[dict]:
    """From the registry alone: both referrers of a published image, and what they say about it."""
    digest = desc["digest"]
    found = referrers.referrers(client, REPO, digest)
    assert sorted(d["artifactType"] for d in found) == [sbom.MEDIA_TYPE, provenance.MEDIA_TYPE], found
    manifest = json.loads(client.get_manifest(REPO, digest)[0])
    labels = json.loads(client.get_blob(REPO, manifest["config"]["digest"]))["config"]["Labels"]
    with tarfile.open(fileobj=io.BytesIO(client.get_blob(REPO, manifest["layers"][-1]["digest"]))) as t:
        gosu = t.extractfile("usr/local/bin/gosu").read()

    [s] = [d for d in found if d["artifactType"] == sbom.MEDIA_TYPE]
    doc = referrers.fetch(client, REPO, s)
    assert JsonStrictValidator(sbom.SCHEMA).validate_str(doc.decode()) is None
    bom = json.loads(doc)
    assert bom["metadata"]["component"]["version"] == digest
    parts = {c["bom-ref"]: c for c in bom["components"]}
    assert parts["gosu"]["hashes"][0]["content"] == labels["org.base-gosu.gosu.sha256"] == \
        hashlib.sha256(gosu).hexdigest()
    go = goinfo.parse(gosu).go_version
    assert labels["org.base-gosu.gosu.go-version"] == go and f"pkg:golang/stdlib@v{go[2:]}" in parts
    apk = {c["name"]: c["version"] for c in parts.values() if c.get("purl", "").startswith("pkg:apk/alpine/")}
    assert apk == _apk_db(client, manifest["layers"][:-1]) and {"musl", "busybox"} <= set(apk)

    [p] = [d for d in found if d["artifactType"] == provenance.MEDIA_TYPE]
    statement = json.loads(referrers.fetch(client, REPO, p))
    assert statement["subject"] == [{"name": REPO, "digest": {"sha256": digest.split(":")[1]}}]
    deps = {d["name"]: d for d in statement["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert deps["gosu"]["digest"]["sha256"] == labels["org.base-gosu.gosu.sha256"]
    assert deps["base"]["digest"]["sha256"] == labels["org.base-gosu.base.platform-digest"].split(":")[1]
    assert deps["gosu"]["annotations"]["trustRoot"] == rig.mirror.fingerprint
    return found


def mislabelled_alpine(registry: Registry, repo: str) -> str:
    """A copy of the local alpine whose arm64 image is really its amd64 one relabelled: a broken base that
    only running it reveals (uname says x86_64). Returns its tag reference."""
    amd64 = next(m for m in json.loads(registry.get_manifest("alpine", "3.20")[0])["manifests"]
                 if m["platform"]["architecture"] == "amd64")
    body = registry.get_manifest("alpine", amd64["digest"])[0]
    manifest = json.loads(body)
    registry.mount_blob(repo, manifest["config"]["digest"], ("alpine",))
    for blob in manifest["layers"]:
        registry.mount_blob(repo, blob["digest"], ("alpine",))
    registry.put_manifest(repo, amd64["digest"], body, amd64["mediaType"])
    arm64 = {"architecture": "arm64", "os": "linux", "variant": "v8"}
    config = oci.canonical({**json.loads(registry.get_blob("alpine", manifest["config"]["digest"])), **arm64})
    fake = oci.canonical({**manifest, "config": {**manifest["config"], "digest": registry.upload_blob(repo, config),
                                                 "size": len(config)}})
    digest = registry.put_manifest(repo, sha256_digest(fake), fake, amd64["mediaType"])
    index = oci.canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        amd64, {"mediaType": amd64["mediaType"], "digest": digest, "size": len(fake), "platform": arm64}]})
    registry.put_manifest(repo, "3.20", index, OCI_INDEX)
    return f"{repo}:3.20"


def test_smoke_failure_in_one_arch_moves_no_tag(rig, reg):
    before = old_state(rig, reg)
    local_registry = Registry(f"127.0.0.1:{rig.cfg.local['registry_port']}")
    base = mislabelled_alpine(local_registry, "base-gosu-test/mislabelled-alpine")
    req = rig.request("alpine", "amd64,arm64")
    flavor = dataclasses.replace(req.settings.flavors["alpine"], base=base, digest="")
    settings = dataclasses.replace(req.settings, flavors={**req.settings.flavors, "alpine": flavor})
    req = dataclasses.replace(req, settings=settings, targets=tuple(model.Target(flavor, t.arch) for t in req.targets))
    client, log = reg.client(), io.StringIO()
    with pytest.raises(pipeline.PipelineError, match="smoke check"):
        shipping.publish(req, rig.engine, client, Destination(reg.host, REPO), log, PublishOptions(allow_trial=True, allow_eol=True))
    assert f"SMOKE FAILED {REPO}:alpine-3.20-arm64: uname -m" in log.getvalue()
    assert f"SMOKE FAILED {REPO}:alpine-3.20-amd64" not in log.getvalue()
    assert client.bytes_uploaded == 0, "nothing is pushed unless every arch passed"
    assert tag_digests(client, rig) == before


@dataclass
class StopsAfterFirstManifest(Registry):
    """A client that stops the registry right after its first manifest lands: a mid-publish outage."""
    on_manifest: Callable[[], None] | None = None

    def put_manifest(self, repo, ref, body, media_type):
        digest = super().put_manifest(repo, ref, body, media_type)
        if self.on_manifest:
            hook, self.on_manifest = self.on_manifest, None
            hook()
        return digest


def test_registry_stopped_mid_publish_leaves_tags_then_rerun_completes(rig, reg):
    before = old_state(rig, reg)
    creds = (reg.user, reg.password)
    client = StopsAfterFirstManifest(reg.host, creds, retries=1, backoff=0.05, on_manifest=reg.stop)
    req = rig.request("alpine", "amd64,arm64")
    with pytest.raises(RegistryError, match=f"registry {reg.host}.*Connection refused"):
        shipping.publish(req, rig.engine, client, Destination(reg.host, REPO), io.StringIO(), PublishOptions(allow_trial=True, allow_eol=True))
    reg.start()
    assert tag_digests(reg.client(), rig) == before

    log = io.StringIO()
    report = shipping.publish(req, rig.engine, reg.client(), Destination(reg.host, REPO), log, PublishOptions(allow_trial=True, allow_eol=True))
    after = tag_digests(reg.client(), rig)
    floating, release, immutable = tags(rig)
    assert report.moved == [floating, release]
    assert after[floating] == after[release] != before[floating]
    assert after[immutable] == before[immutable], "the gosu-versioned tag never moves once published"
    assert "kept (immutable)" in log.getvalue()


def test_failed_tag_move_puts_back_the_tags_already_moved(rig, reg):
    before = old_state(rig, reg)
    floating, release, _ = tags(rig)
    proxy = Proxy(reg.host, [Fault("PUT", f"/manifests/{release}$", 500, times=10)])
    try:
        with pytest.raises(PublishError, match=f"restored {floating}"):
            publish_built([rig.built("alpine", a) for a in ARCHES], reg.client(host=proxy.host), rig.engine)
        assert ("PUT", f"/v2/{REPO}/manifests/{floating}", "forwarded") in proxy.requests, "floating moved first"
    finally:
        proxy.close()
    assert tag_digests(reg.client(), rig) == before


def test_transient_5xx_and_resets_are_retried(rig, reg):
    proxy = Proxy(reg.host, [
        Fault("POST", r"/blobs/uploads/$", 503, times=2),
        Fault("PUT", r"/blobs/uploads/", "reset"),
        Fault("PUT", r"/manifests/sha256:", 502),
        Fault("PUT", r"/manifests/alpine$", "reset"),
    ])
    try:
        publish_built([rig.built("alpine", a) for a in ARCHES], reg.client(host=proxy.host, retries=3), rig.engine)
        assert all(f.times == 0 for f in proxy.faults), [f for f in proxy.faults if f.times]
    finally:
        proxy.close()
    digests = tag_digests(reg.client(), rig)
    assert len(set(digests.values())) == 1 and None not in digests.values()


def test_write_access_denied_is_one_clear_error(rig, reg):
    proxy = Proxy(reg.host, [Fault("POST", r"/blobs/uploads/", 403, times=99)])
    try:
        with pytest.raises(AuthError, match=f"registry {proxy.host} denied POST /{REPO}/blobs/uploads/ \\(HTTP 403\\): "
                                            f"the credentials in use have no push permission on {REPO}"):
            publish_built([rig.built("alpine", a) for a in ARCHES], reg.client(host=proxy.host), rig.engine)
    finally:
        proxy.close()
    assert set(tag_digests(reg.client(), rig).values()) == {None}


def test_refused_credentials_are_one_clear_error_without_the_secret(rig, reg):
    with pytest.raises(AuthError) as e:
        reg.client(password="wrong-pass-123").get_manifest(REPO, "alpine")
    assert f"registry {reg.host} refused the credentials" in str(e.value)
    with pytest.raises(AuthError, match="refused anonymous access"):
        Registry(reg.host, None, retries=0).get_manifest(REPO, "alpine")

    p = run_invoke("publish", "--flavor", "alpine", "--registry", reg.host, "--dry-run", "--allow-trial", "--allow-eol", "--unsigned",
                   env={"REGISTRY_USERNAME": reg.user, "REGISTRY_PASSWORD": "wrong-pass-123"})
    assert p.returncode == 1, p.stdout + p.stderr
    assert f"publish: error: registry {reg.host} refused the credentials" in p.stderr
    assert "REGISTRY_USERNAME" in p.stderr, "the error says what to do"
    assert "wrong-pass-123" not in p.stdout + p.stderr


def test_split_push_per_arch_then_assemble_elsewhere(rig, reg, tmp_path):
    digests_dir = tmp_path / "digests"
    # Each push job signs and attests its arch, the assemble job signs the index: one key, from CI's secrets.
    subprocess.run([str(rig.cosign), "generate-key-pair", "--output-key-prefix", str(tmp_path / "ci")], check=True,
                   env={**os.environ, "COSIGN_PASSWORD": "ci-key-pass-5"}, capture_output=True, timeout=60)
    env = {"REGISTRY_USERNAME": reg.user, "REGISTRY_PASSWORD": reg.password, "COSIGN_PASSWORD": "ci-key-pass-5"}
    common = ("--flavor", "alpine", "--registry", reg.host, "--sign-key", str(tmp_path / "ci.key"))
    refused = run_invoke("push", *common, "--arch", "amd64", "--digests-dir", str(digests_dir), env=env)
    assert refused.returncode == 1 and "is a trial image" in refused.stderr and not digests_dir.exists()
    common += ("--allow-trial", "--allow-eol")

    amd = run_invoke("push", *common, "--arch", "amd64", "--digests-dir", str(digests_dir), env=env)
    assert amd.returncode == 0, amd.stdout + amd.stderr
    assert [p.name for p in digests_dir.iterdir()] == ["alpine-3.20-amd64.json"]

    early = run_invoke("assemble", *common, "--digests-dir", str(digests_dir), env=env)
    assert early.returncode == 1
    assert "no push record for alpine 3.20 arm64" in early.stderr and "No tag was moved" in early.stderr
    assert set(tag_digests(reg.client(), rig).values()) == {None}

    arm = run_invoke("push", *common, "--arch", "arm64", "--digests-dir", str(digests_dir), env=env)
    assert arm.returncode == 0, arm.stdout + arm.stderr
    record = json.loads((digests_dir / "alpine-3.20-arm64.json").read_text())
    assert record["platform"] == {"architecture": "arm64", "os": "linux", "variant": "v8"}
    assert reg.client().get_manifest(REPO, record["digest"]) is not None, "pushed by digest"
    assert set(tag_digests(reg.client(), rig).values()) == {None}, "push moves no tag"

    dry = run_invoke("assemble", *common, "--digests-dir", str(digests_dir), "--dry-run", env=env)
    assert dry.returncode == 0 and dry.stdout.count(": create") == 3, dry.stdout + dry.stderr
    assert set(tag_digests(reg.client(), rig).values()) == {None}

    done = run_invoke("assemble", *common, "--digests-dir", str(digests_dir), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    digests = tag_digests(reg.client(), rig)
    assert len(set(digests.values())) == 1 and None not in digests.values()
    index = json.loads(reg.client().get_manifest(REPO, "alpine")[0])
    assert {m["digest"] for m in index["manifests"]} == {
        json.loads((digests_dir / f"alpine-3.20-{a}.json").read_text())["digest"] for a in ARCHES}
    assert done.stdout.count(" signed (key ") == 1, "push signed the children; assemble signs only the index"
    verify = run_invoke("verify", f"{reg.host}/{REPO}:alpine", "--key", str(tmp_path / "ci.pub"), env=env)
    assert verify.returncode == 0 and "9/9 checks hold" in verify.stdout, verify.stdout + verify.stderr
    outputs = "".join(p.stdout + p.stderr for p in (amd, early, arm, dry, done, verify))
    assert reg.password not in outputs and "ci-key-pass-5" not in outputs


def test_bearer_token_registry(rig, tmp_path):
    """Docker Hub and GHCR hand out scoped tokens; the client must fetch and use them."""
    upstream = tmp_path / "anonymous"
    host = f"127.0.0.1:{free_port()}"
    pid = local.start_registry(upstream, host)
    proxy = Proxy(host, bearer=("ci-bot", "token-pass-7"))
    try:
        client = Registry(proxy.host, ("ci-bot", "token-pass-7"), retries=1, backoff=0.05)
        publish_built([rig.built("alpine", a) for a in ARCHES], client, rig.engine)
        assert proxy.tokens_issued >= 2, "one pull token and one pull,push token at least"
        got = client.get_manifest(REPO, "alpine")
        assert got and {oci.platform_key(m["platform"]) for m in json.loads(got[0])["manifests"]} == \
            set(PLATFORMS.values())
        with pytest.raises(AuthError, match=f"registry {proxy.host} refused the credentials"):
            Registry(proxy.host, ("ci-bot", "nope"), retries=0).get_manifest(REPO, "alpine")
    finally:
        proxy.close()
        os.kill(pid, signal.SIGTERM)


def test_an_eol_release_is_refused_elsewhere_before_a_byte_then_goes_with_allow_eol_and_its_label(rig, reg):
    """Alpine 3.20 (past its end of life on 2026-04-01): built and smoke-tested like any other, stopped at the
    door of any registry but the local one, let through on purpose with --allow-eol, labelled either way."""
    creds = credentials_for(reg.host)
    req = rig.request("alpine", "amd64")
    assert req.targets[0].flavor.release == "3.20" and req.targets[0].flavor.eol.past(req.today)
    proxy = Proxy(reg.host)
    try:
        with pytest.raises(PublishError) as refused:
            shipping.publish(req, rig.engine, Registry(proxy.host, creds, retries=1), Destination(proxy.host, REPO),
                             io.StringIO(), PublishOptions(allow_trial=True))
        assert "alpine-3.20-amd64: its base release reached its end of life on 2026-04-01" in str(refused.value)
        assert "--allow-eol" in str(refused.value) and "Nothing was pushed" in str(refused.value)
        assert proxy.writes() == []
    finally:
        proxy.close()
    client = reg.client()
    log = io.StringIO()
    shipping.publish(req, rig.engine, client, Destination(reg.host, REPO), log, PublishOptions(allow_trial=True, allow_eol=True))
    assert "warning: alpine 3.20 (alpine:3.20) reached its end of life on 2026-04-01" in log.getvalue()
    index = json.loads(client.get_manifest(REPO, "alpine-3.20")[0])
    [child] = index["manifests"]
    labels = oci.child_config(client, REPO, child["digest"])["config"]["Labels"]
    assert labels["org.base-gosu.base.release"] == "3.20"
    assert labels["org.base-gosu.base.eol"].startswith("2026-04-01 (alpinelinux.org/releases/")
