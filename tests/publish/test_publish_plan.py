"""Publish planning without an engine: tags, push records, destinations, credentials."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest

from builder.core import arches
from builder import config, wiring
from builder.config import publishing
from builder.publish import matrix, push as pub, tags
from builder.publish.push import Child, PublishError
from builder.publish.tags import TagState
from builder.core.registry import credentials_for

from tests.support.engine import project_config


def child(arch="amd64", flavor="alpine", **kw) -> Child:
    platform = {"amd64": {"architecture": "amd64", "os": "linux"},
                "arm64": {"architecture": "arm64", "os": "linux", "variant": "v8"}}.get(
                    arch, {"architecture": arch, "os": "linux"})
    args = dict(flavor=flavor, release="3.20", arch=arch, platform=platform, digest=f"sha256:{arch * 8}",
                size=875, inputs=f"sha256:in-{arch}", gosu_version="1.19", revision="abc", created="2026-11-23")
    return Child(**{**args, **kw})


def test_three_tags_for_the_default_release_two_for_the_others_and_invalid_ones_refused():
    assert tags.tags_for("alpine", "3.20", "1.19") == ("alpine", "alpine-3.20", "alpine-3.20-gosu1.19")
    # Only the default release moves the floating <flavor>: publishing another release never touches it.
    assert tags.tags_for("alpine", "3.22", "1.19", default=False) == ("alpine-3.22", "alpine-3.22-gosu1.19")
    with pytest.raises(PublishError, match="'ubuntu-24 04' is not a valid tag"):
        tags.tags_for("ubuntu", "24 04", "1.19")


def test_push_records_round_trip_and_bad_ones_named(tmp_path):
    paths = pub.write_records(tmp_path / "d", [child("amd64"), child("arm64")])
    assert [p.name for p in paths] == ["alpine-3.20-amd64.json", "alpine-3.20-arm64.json"]
    assert pub.read_records(tmp_path / "d") == [child("amd64"), child("arm64")]
    assert not list((tmp_path / "d").glob("*.tmp"))
    with pytest.raises(PublishError, match=f"no push records .* in {tmp_path / 'empty'}"):
        pub.read_records(tmp_path / "empty")
    (tmp_path / "d" / "alpine-3.20-arm64.json").write_text("{not json")
    with pytest.raises(PublishError, match="alpine-3.20-arm64.json is unreadable"):
        pub.read_records(tmp_path / "d")


def test_assemble_refuses_missing_duplicate_or_mixed_records():
    expected = [("alpine", "3.20", "amd64"), ("alpine", "3.20", "arm64")]
    with pytest.raises(PublishError, match="no push record for alpine 3.20 arm64: its push job failed"):
        pub.check_children([child("amd64")], expected)
    with pytest.raises(PublishError, match="two push records for alpine 3.20 amd64"):
        pub.check_children([child("amd64"), child("amd64", digest="sha256:other")], expected)
    with pytest.raises(PublishError, match="alpine-3.20: its arches were built from different gosu versions"):
        pub.check_children([child("amd64"), child("arm64", gosu_version="1.17")], expected)
    # Another release's record is not this release's: it is refused unless asked for.
    with pytest.raises(PublishError, match="push record for alpine 3.22 arm64 was not asked for"):
        pub.check_children([child("amd64"), child("arm64"), child("arm64", release="3.22")], expected)
    assert set(pub.check_children([child("amd64"), child("arm64")], expected)) == {"alpine-3.20"}


# What each flavor publishes: every platform its base publishes that gosu runs on.
PLATFORMS = {
    "minideb": ["linux/amd64", "linux/arm64/v8"],
    "ubuntu": ["linux/amd64", "linux/arm64/v8", "linux/arm/v7", "linux/ppc64le", "linux/riscv64", "linux/s390x"],
    "alpine": ["linux/amd64", "linux/arm64/v8", "linux/arm/v6", "linux/arm/v7", "linux/386", "linux/ppc64le",
               "linux/riscv64", "linux/s390x"],
}


def test_assemble_with_arch_all_expects_each_flavors_own_arches_and_nothing_more(monkeypatch):
    """What the nightly's assemble (INVOKE_PUBLISH_ARCHES=all) requires: one record per configured pair."""
    monkeypatch.setenv("INVOKE_PUBLISH_ARCHES", "all")
    cfg = project_config()
    assert publishing.publish_arches(wiring.settings(cfg).publish, None) == "all"
    settings = config.image_settings(cfg.images)
    expected = matrix.expected_targets(settings, None, "all")
    flavors = settings.flavors
    assert {f: [str(flavors[f].platform_of(arches.get(a, arches.IMAGE_ARCHES))) for g, _, a in expected if g == f]
            for f in flavors} == PLATFORMS
    assert len(expected) == len(set(expected)) == 16
    assert matrix.expected_targets(settings, "minideb", "all") == [("minideb", "trixie", "amd64"),
                                                                   ("minideb", "trixie", "arm64")]
    records = [child(a, flavor=f, release=r) for f, r, a in expected]
    assert {f: len(g) for f, g in pub.check_children(records, expected).items()} == \
        {"minideb-trixie": 2, "ubuntu-24.04": 6, "alpine-3.24": 8}
    # --release all: every release not past its end of life, each with its own arches.
    every = matrix.expected_targets(settings, "minideb,alpine", "all", "all", dt.date(2026, 12, 2))
    assert sorted({(f, r) for f, r, _ in every}) == [("alpine", "3.22"), ("alpine", "3.23"), ("alpine", "3.24"),
                                                     ("minideb", "bookworm"), ("minideb", "trixie")]
    with pytest.raises(PublishError, match="no push record for alpine 3.24 armv7"):
        pub.check_children([c for c in records if (c.flavor, c.arch) != ("alpine", "armv7")], expected)
    with pytest.raises(PublishError, match="push record for minideb trixie s390x was not asked for.*No tag was moved"):
        pub.check_children(records + [child("s390x", flavor="minideb", release="trixie")], expected)


def test_index_lists_children_in_a_stable_order():
    a, b = child("amd64"), child("arm64")
    assert tags.index_for([b, a], {}) == tags.index_for([a, b], {})
    doc = json.loads(tags.index_for([b, a], {"k": "v"}))
    assert [m["platform"]["architecture"] for m in doc["manifests"]] == ["amd64", "arm64"]
    assert doc["mediaType"] == "application/vnd.oci.image.index.v1+json"


def test_shrinking_a_tag_is_refused_unless_asked():
    state = TagState("alpine", "sha256:x", b"{}", children={"linux/amd64": {}, "linux/arm64/v8": {}})
    with pytest.raises(PublishError, match="linux/arm64/v8 would disappear.*--allow-shrink"):
        tags.check_shrink({"alpine": state}, {"linux/amd64"}, allow_shrink=False)
    tags.check_shrink({"alpine": state}, {"linux/amd64"}, allow_shrink=True)
    tags.check_shrink({"alpine": state}, {"linux/amd64", "linux/arm64/v8", "linux/ppc64le"}, allow_shrink=False)


@pytest.mark.parametrize("registry,repository,message", [
    ("https://ghcr.io", None, "registry 'https://ghcr.io': give HOST\\[:PORT\\] without scheme"),
    ("ghcr.io/org", None, "without scheme or path"),
    (None, "Org/Base-Gosu", "repository 'Org/Base-Gosu' is not a valid name"),
])
def test_destination_names_the_bad_input(registry, repository, message):
    with pytest.raises(ValueError, match=message):
        wiring.destination(wiring.settings(wiring.project_config()), registry, repository)


def test_destination_defaults_to_the_local_registry(monkeypatch):
    monkeypatch.delenv("REGISTRY_USERNAME", raising=False)
    dest, client = wiring.destination(wiring.settings(wiring.project_config()))
    assert (dest.registry, dest.repository) == ("127.0.0.1:5000", "org/base-gosu")
    assert client.base == "http://127.0.0.1:5000/v2"
    _, remote = wiring.destination(wiring.settings(wiring.project_config()), "ghcr.io", "org/base-gosu")
    assert remote.base == "https://ghcr.io/v2", "plain HTTP only for loopback"


def test_credentials_from_environment_then_docker_config(tmp_path, monkeypatch):
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"auths": {"ghcr.io": {"auth": base64.b64encode(b"bot:s3cr:et").decode()}}}))
    env = {"DOCKER_CONFIG": str(tmp_path)}
    assert credentials_for("ghcr.io", env) == ("bot", "s3cr:et")
    assert credentials_for("quay.io", env) is None
    assert credentials_for("ghcr.io", {**env, "REGISTRY_USERNAME": "u", "REGISTRY_PASSWORD": "p"}) == ("u", "p")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.delenv("REGISTRY_USERNAME", raising=False)
    _, client = wiring.destination(wiring.settings(wiring.project_config()), "ghcr.io")
    assert client.credentials == ("bot", "s3cr:et")
    assert "s3cr" not in repr(client), "a client printed in a traceback must not show the secret"
