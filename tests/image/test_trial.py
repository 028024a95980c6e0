"""Where gosu and the bases came from, in labels; trial inputs never leave the machine unasked.

An image is a trial image when a base is a stand-in or gosu was trusted
through a key that is not pinned in keys/. Real engine, real registries.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import subprocess
import sys

import pytest

from builder.gosu import fetch as fetch_stage
from builder import pipeline, shipping, wiring
from builder.publish.push import PublishError
from builder.config.settings import Destination
from builder.core.registry import Registry

from tests.conftest import ROOT
from tests.support.engine import rig  # noqa: F401 - fixture
from tests.support.httpmirror import Mirror
from tests.support.registries import free_port

DEBIAN_FPRS = {p.stem for p in (ROOT / "keys" / "debian-archive").glob("*.asc")}


def test_auto_takes_github_when_it_answers_else_debian(tmp_path):
    assert fetch_stage.choose_source(str(tmp_path), 2)[0] == "github"
    assert fetch_stage.choose_source(str(tmp_path / "missing"), 2)[0] == "debian"
    kind, why = fetch_stage.choose_source(f"http://127.0.0.1:{free_port()}/releases", 2)
    assert kind == "debian" and "cannot be reached (Connection refused)" in why
    with Mirror(tmp_path) as m:
        assert fetch_stage.choose_source(m.url, 2) == ("github", f"{m.url} answers")


def _labels(engine, tag: str) -> dict:
    return engine.inspect(tag)["Config"]["Labels"]


@pytest.mark.engine
def test_debian_gosu_on_the_real_alpine_base_is_a_production_image(rig):
    req = rig.request("alpine", "amd64")
    req = dataclasses.replace(req, fetch=wiring.fetch_options(rig.cfg.gosu, source="debian", arch="amd64"))
    [built] = pipeline.build(req, rig.engine, io.StringIO())
    labels = _labels(rig.engine, built.tag)
    assert labels["org.base-gosu.gosu.source"] == "debian"
    assert labels["org.base-gosu.gosu.trust-root"] in DEBIAN_FPRS
    assert labels["org.base-gosu.gosu.debian.suite"] == "trixie"
    assert labels["org.base-gosu.gosu.debian.package"].startswith("1.17-")
    assert labels["org.base-gosu.trial"] == "" and "org.base-gosu.base.standin-for" not in labels
    out = rig.engine.container(built.tag, "--version", options=["--entrypoint", "gosu"], check=True).stdout
    assert out.startswith("1.17 (go1.")


@pytest.mark.engine
def test_standin_base_and_test_key_are_named_in_the_trial_label(rig):
    minideb = rig.built("minideb", "amd64")
    labels = _labels(rig.engine, minideb.tag)
    assert labels["org.base-gosu.base.standin-for"] == "bitnami/minideb:trixie"
    trial = labels["org.base-gosu.trial"]
    assert "standin/minideb-from-debootstrap:trixie is a stand-in for bitnami/minideb:trixie" in trial
    assert f"gosu is trusted through key {rig.mirror.fingerprint}, which is not pinned in keys/" in trial
    alpine = rig.built("alpine", "amd64")
    assert "stand-in" not in _labels(rig.engine, alpine.tag)["org.base-gosu.trial"]


@contextlib.contextmanager
def second_registry(tmp_path):
    """A registry on loopback that plays a remote one (not the local registry `invoke up` runs)."""
    from builder.local import setup as local
    host = f"127.0.0.1:{free_port()}"
    pid = local.start_registry(tmp_path / "remote", host)
    try:
        yield host
    finally:
        os.kill(pid, 15)


@pytest.mark.engine
def test_trial_images_are_refused_by_another_registry_before_a_byte_is_sent(rig, tmp_path):
    with second_registry(tmp_path) as host:
        client = Registry(host, retries=1)
        with pytest.raises(PublishError) as e:
            shipping.publish(rig.request("minideb", "amd64"), rig.engine, client, Destination(host, "org/base-gosu"),
                             io.StringIO())
        assert "minideb-trixie-amd64 is a trial image: base 127.0.0.1:5000/standin/minideb-from-debootstrap:trixie" \
               in str(e.value)
        assert client.bytes_uploaded == 0 and client.get_manifest("org/base-gosu", "minideb") is None


def _invoke(*args, env=None):
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=1200)


@pytest.mark.engine
def test_release_without_github_takes_debian_and_says_why(rig, tmp_path):
    """The README's main command, offline: `release` chooses Debian's archive and publishes to the local registry."""
    repo = "base-gosu-test/release"
    r = _invoke("release", "--flavor", "alpine", "--arch", "amd64", env={"INVOKE_IMAGES_REPOSITORY": repo})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    out = r.stdout + r.stderr
    assert "gosu source: debian, because https://github.com/tianon/gosu/releases/download cannot be reached" in out
    local = Registry(f"127.0.0.1:{rig.cfg.local.registry_port}")
    index = json.loads(local.get_manifest(repo, "alpine-3.20-gosu1.17")[0])
    assert [m["platform"]["architecture"] for m in index["manifests"]] == ["amd64"]
    # A production image (real alpine base, gosu through Debian's keys) may also go to another registry; the
    # alpine release seedable here (3.20) is past its end of life, which that needs said out loud.
    with second_registry(tmp_path) as host:
        r = _invoke("publish", "--flavor", "alpine", "--arch", "amd64", "--source", "debian", "--registry", host,
                    "--unsigned", "--allow-eol", env={"INVOKE_IMAGES_REPOSITORY": repo})
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        assert Registry(host).get_manifest(repo, "alpine") is not None
