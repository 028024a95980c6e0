"""A security team's mirror: published to registry A, copied to registry B (htpasswd) with the standard tools,
verified at B with `--origin`."""

from __future__ import annotations

import io
import os
import signal
import subprocess

import pytest

from builder import shipping
from builder.shipping import PublishOptions
from builder.core.emulation import native_arch
from builder.local import setup, tools
from builder.publish import push as pub, signing
from builder.config.settings import Destination
from builder.core.registry import Registry
from tests.conftest import ROOT
from tests.support.engine import ARCHES, project_config, rig  # noqa: F401 - fixture
from tests.support.registries import AuthRegistry, free_port

pytestmark = pytest.mark.engine

REPO = project_config().images["repository"]
MIRROR = "mirror/base-gosu"


def invoke(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([".venv/bin/invoke", *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def mirrored(rig, tmp_path_factory):
    """alpine (amd64, arm64) signed in A; copied to B by `cosign copy` (image, signatures, attestations) and
    `oras cp -r` (the SBOM and provenance referrers)."""
    tmp = tmp_path_factory.mktemp("mirror")
    subprocess.run([str(rig.cosign), "generate-key-pair", "--output-key-prefix", str(tmp / "release")], check=True,
                   env={**os.environ, "COSIGN_PASSWORD": ""}, capture_output=True, timeout=60)
    a_host = f"127.0.0.1:{free_port()}"
    a_pid = setup.start_registry(tmp / "a", a_host)
    b = AuthRegistry(tmp / "b")
    try:
        client = Registry(a_host, None)
        dest = Destination(a_host, REPO)
        children = [pub.push_child(client, dest, rig.built("alpine", a), io.StringIO())[0] for a in ARCHES]
        signer = signing.Signer(rig.cosign, signing.Identity(key=str(tmp / "release.key")),
                                {**os.environ, "COSIGN_PASSWORD": ""})
        shipping.assemble(children, client, dest, [("alpine", "3.20", a) for a in ARCHES], io.StringIO(),
                          PublishOptions(allow_trial=True, allow_eol=True, signer=signer))
        docker_config = tmp / "docker-config"
        b.logged_in_engine(docker_config)
        env = {**os.environ, "DOCKER_CONFIG": str(docker_config)}
        src, dst = f"{a_host}/{REPO}:alpine", f"{b.host}/{MIRROR}:alpine"
        copy = subprocess.run([str(rig.cosign), "copy", "--allow-http-registry", src, dst], env=env,
                              capture_output=True, text=True, timeout=300)
        assert copy.returncode == 0, copy.stderr
        oras = tools.ensure(rig.settings.tools, "oras", native_arch(), io.StringIO())
        cp = subprocess.run([str(oras), "cp", "-r", "--from-plain-http", "--to-plain-http",
                             "--to-username", b.user, "--to-password", b.password, src, dst],
                            capture_output=True, text=True, timeout=300)
        assert cp.returncode == 0, cp.stdout + cp.stderr
        yield a_host, b, tmp / "release.pub", env
    finally:
        os.kill(a_pid, signal.SIGTERM)
        b.stop()


def test_a_mirror_verifies_with_its_origin_named(rig, mirrored):
    a_host, b, pub_key, env = mirrored
    ref = f"{b.host}/{MIRROR}:alpine"
    creds = {"REGISTRY_USERNAME": b.user, "REGISTRY_PASSWORD": b.password}

    # cosign itself does not compare the repository a signature names: plain verify passes at B.
    plain = subprocess.run([str(rig.cosign), "verify", "--key", str(pub_key), "--insecure-ignore-tlog=true",
                            "--allow-http-registry", ref], env=env, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 0, plain.stderr

    # invoke verify does, and says how to name where the mirror's copy was signed.
    refused = invoke("verify", ref, "--key", str(pub_key), env=creds)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "3 failed: do not build on this image" in refused.stdout
    assert f"the signature payload is for {a_host}/{REPO}, not {b.host}/{MIRROR}" in refused.stdout
    assert "--origin HOST/REPO" in refused.stdout

    held = invoke("verify", ref, "--key", str(pub_key), "--origin", f"{a_host}/{REPO}", env=creds)
    assert held.returncode == 0, held.stdout + held.stderr
    assert "9/9 checks hold" in held.stdout
    assert held.stdout.count(f"ok, signed as {a_host}/{REPO}") == 3, held.stdout

    # Naming some other origin does not help: a signature must name this repository or one named.
    wrong = invoke("verify", ref, "--key", str(pub_key), "--origin", f"{a_host}/someone/else", env=creds)
    assert wrong.returncode == 1 and "3 failed" in wrong.stdout, wrong.stdout
    bad = invoke("verify", ref, "--key", str(pub_key), "--origin", f"{a_host}/{REPO}:alpine", env=creds)
    assert bad.returncode == 2 and "is not HOST[:PORT]/REPO" in bad.stderr, bad.stderr

    # The referrers came along: the SBOM reads from B alone.
    sbom = invoke("sbom", ref, "--platform", "linux/amd64", env=creds)
    assert sbom.returncode == 0 and '"bomFormat": "CycloneDX"' in sbom.stdout, sbom.stderr


def test_origins_from_configuration(rig, mirrored):
    a_host, b, pub_key, _ = mirrored
    env = {"REGISTRY_USERNAME": b.user, "REGISTRY_PASSWORD": b.password, "INVOKE_VERIFY_ORIGINS": f"{a_host}/{REPO}"}
    held = invoke("verify", f"{b.host}/{MIRROR}:alpine", "--key", str(pub_key), env=env)
    assert held.returncode == 0 and "9/9 checks hold" in held.stdout, held.stdout + held.stderr
