"""Every arch each flavor's base publishes: built, smoke-tested under emulation, published, run by digest.

This is `invoke publish --flavor alpine,ubuntu --arch all` to a second loopback
registry, with gosu from Debian's archive (every arch, offline), then each
child of each index pulled by digest and started under its own platform.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from builder.core import arches, oci

from tests.conftest import ROOT
from tests.support.binfmt import handlers_held
from tests.support.engine import rig  # noqa: F401 - fixture
from tests.support.registries import AuthRegistry

# A lane of its own beside the other engine tests (tests/conftest.py): its registry, its repository (so its
# engine tags are its own) and the qemu handlers held for as long as it smoke-tests foreign arches.
pytestmark = [pytest.mark.engine, pytest.mark.xdist_group("every-arch")]

REPO = "base-gosu-test/every-arch"
# The release of each flavor whose stand-in base Debian's mirror here serves for every arch: trixie's newest
# point release lacks its ppc64el and s390x files there, so ubuntu's default (24.04, from trixie) cannot be
# seeded for those arches; 22.04's stand-in is bookworm (riscv64 from trixie, which the mirror has).
RELEASES = {"alpine": "3.20", "ubuntu": "22.04"}
WANT = {
    "alpine": {"linux/amd64", "linux/arm64/v8", "linux/arm/v6", "linux/arm/v7", "linux/386", "linux/ppc64le",
               "linux/riscv64", "linux/s390x"},
    "ubuntu": {"linux/amd64", "linux/arm64/v8", "linux/arm/v7", "linux/ppc64le", "linux/riscv64", "linux/s390x"},
}


@pytest.fixture(autouse=True)
def _qemu_handlers_stay_on():
    with handlers_held():
        yield


def invoke(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT,
                          env={**os.environ, "INVOKE_IMAGES_REPOSITORY": REPO, **env},
                          capture_output=True, text=True, timeout=3600)


def test_publish_alpine_and_ubuntu_for_every_arch_and_run_each_child(rig, tmp_path):
    reg = AuthRegistry(tmp_path / "registry")
    try:
        subprocess.run([str(rig.cosign), "generate-key-pair", "--output-key-prefix", str(tmp_path / "ci")],
                       check=True, env={**os.environ, "COSIGN_PASSWORD": "all-arch-7"}, capture_output=True,
                       timeout=60)
        env = {"REGISTRY_USERNAME": reg.user, "REGISTRY_PASSWORD": reg.password, "COSIGN_PASSWORD": "all-arch-7"}
        done = invoke("publish", "--flavor", "alpine,ubuntu", "--release", ",".join(RELEASES.values()), "--arch",
                      "all", "--registry", reg.host, "--source", "debian", "--allow-trial", "--allow-eol", "--sign-key", str(tmp_path / "ci.key"), env=env)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
        assert "smoke: all " in done.stdout + done.stderr, "every image was smoke-tested before anything was pushed"

        client = reg.client()
        engine = reg.logged_in_engine(tmp_path / "docker-config")
        for flavor, platforms in WANT.items():
            index = json.loads(client.get_manifest(REPO, f"{flavor}-{RELEASES[flavor]}")[0])
            children = {oci.platform_key(m["platform"]): m["digest"] for m in index["manifests"]}
            assert set(children) == platforms, (flavor, sorted(children))
            settings = rig.request(flavor, "amd64").settings.releases[flavor][RELEASES[flavor]]
            for platform, digest in sorted(children.items()):
                arch = settings.arch_for(platform)
                ref = f"{reg.host}/{REPO}@{digest}"
                engine.pull(ref, platform)
                try:
                    out = engine.run("run", "--rm", "--network", "none", "--platform", platform, ref,
                                     "sh", "-c", "id -un; gosu --version").stdout
                finally:
                    engine.remove_image(ref)
                lines = out.splitlines()
                assert lines[0] == "ops", (platform, out)
                assert f"on linux/{arches.GOARCH[arch.dpkg]};" in lines[1], (platform, out)
        checked = invoke("verify", f"{reg.host}/{REPO}:alpine-3.20", "--key", str(tmp_path / "ci.pub"), env=env)
        assert checked.returncode == 0 and "checks hold" in checked.stdout, checked.stdout + checked.stderr
    finally:
        reg.stop()
