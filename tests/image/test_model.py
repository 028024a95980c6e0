"""Build planning and base references: validated before anything is built."""

import json

import pytest

from builder import config, wiring
from builder.image import bases, model
from builder.core import arches, refs
from builder.config.settings import ImageSettings
from tests.support.engine import project_config


def settings():
    """As this machine sees them: bases through the local registry, so local.default_releases applies."""
    cfg = project_config()
    return config.image_settings(cfg.images, cfg.local)


def test_repository_default_and_tags():
    s = settings()
    assert s.repository == "org/base-gosu"
    assert s.tag("alpine", "arm64") == "org/base-gosu:alpine-3.20-arm64"
    assert s.tag("minideb", "arm64", "bookworm") == "org/base-gosu:minideb-bookworm-arm64"


def test_unknown_flavor_or_arch_or_unsupported_pair_fails_before_building():
    s = settings()
    with pytest.raises(ValueError, match="unknown flavor centos: use one of minideb, ubuntu, alpine"):
        model.select_targets(s, "alpine,centos", "amd64", "amd64")
    with pytest.raises(ValueError, match="unknown architecture 'sparc'"):
        model.select_targets(s, "alpine", "sparc", "amd64")
    with pytest.raises(ValueError, match="flavor minideb trixie has no s390x image: its base bitnami/minideb:trixie "
                                         "exists only for amd64, arm64"):
        model.select_targets(s, "minideb", "s390x", "amd64")


def test_plan_defaults_to_all_flavors_on_the_host_arch():
    assert [t.name for t in model.select_targets(settings(), None, None, "arm64")] == \
        ["minideb-trixie-arm64", "ubuntu-24.04-arm64", "alpine-3.20-arm64"]


def test_real_defaults_and_local_standins():
    s = settings()
    assert [s.flavors[f].base for f in ("minideb", "ubuntu", "alpine")] == \
        ["bitnami/minideb:trixie", "ubuntu:24.04", "alpine:3.20"]
    # Elsewhere (bases not through the local registry) alpine's default is the configured, supported one.
    cfg = project_config()
    assert config.image_settings(cfg.images).flavors["alpine"].base == "alpine:3.24"
    assert s.base_candidates(s.flavors["ubuntu"])[-1] == ("127.0.0.1:5000/standin/ubuntu-from-debian:24.04", True)
    prod = ImageSettings(**{**s.__dict__, "base_mirror": "", "use_standins": "false"})
    assert prod.base_candidates(prod.flavors["ubuntu"]) == [("ubuntu:24.04", False)]


def test_auto_tries_the_real_base_through_the_mirror_then_its_registry_then_the_standin():
    s = settings()
    assert s.use_standins == "auto"
    assert s.base_candidates(s.flavors["minideb"]) == [
        ("127.0.0.1:5000/bitnami/minideb:trixie", False), ("bitnami/minideb:trixie", False),
        ("127.0.0.1:5000/standin/minideb-from-debootstrap:trixie", True)]
    assert s.base_candidates(s.flavors["alpine"]) == [("127.0.0.1:5000/alpine:3.20", False), ("alpine:3.20", False)]


@pytest.mark.parametrize("ref,want", [
    ("alpine:3.20", ("registry-1.docker.io", "library/alpine", "3.20")),
    ("bitnami/minideb:bookworm", ("registry-1.docker.io", "bitnami/minideb", "bookworm")),
    ("127.0.0.1:5000/standin/ubuntu-from-debian:24.04", ("127.0.0.1:5000", "standin/ubuntu-from-debian", "24.04")),
    ("ghcr.io/org/x", ("ghcr.io", "org/x", "latest")),
])
def test_split_ref(ref, want):
    assert refs.split_ref(ref) == want


@pytest.mark.parametrize("value,want", [("false", False), ("0", False), ("no", False), ("true", True), ("1", True)])
def test_production_bases_by_environment(monkeypatch, value, want):
    """The nightly workflow switches to the real bases with INVOKE_IMAGES_* variables."""
    monkeypatch.setenv("INVOKE_IMAGES_BASE_MIRROR", "")
    monkeypatch.setenv("INVOKE_IMAGES_USE_STANDINS", value)
    s = settings()
    assert s.use_standins == str(want).lower()
    assert s.base_candidates(s.flavors["minideb"])[0][0] == ("standin/minideb-from-debootstrap:trixie" if want
                                                             else "bitnami/minideb:trixie")


def test_a_misspelt_switch_is_an_error(monkeypatch):
    monkeypatch.setenv("INVOKE_IMAGES_USE_STANDINS", "flase")
    with pytest.raises(ValueError, match="images.use_standins is 'flase': use auto, true or false"):
        settings()


def test_arch_all_is_every_arch_of_each_flavor_with_its_own_platform():
    targets = model.select_targets(settings(), "minideb,ubuntu,alpine", "all", "amd64")
    got = {}
    for t in targets:
        got.setdefault(t.flavor.name, []).append(str(t.platform))
    assert got == {
        "minideb": ["linux/amd64", "linux/arm64/v8"],
        "ubuntu": ["linux/amd64", "linux/arm64/v8", "linux/arm/v7", "linux/ppc64le", "linux/riscv64", "linux/s390x"],
        "alpine": ["linux/amd64", "linux/arm64/v8", "linux/arm/v6", "linux/arm/v7", "linux/386", "linux/ppc64le",
                   "linux/riscv64", "linux/s390x"],
    }
    # Alpine's two 32-bit ARM images carry the one gosu armhf build; ubuntu's armhf is ARMv7.
    alpine = {t.arch.dpkg: t for t in targets if t.flavor.name == "alpine"}
    assert (alpine["armhf"].arch.gosu, alpine["armv7"].arch.gosu) == ("armhf", "armhf")
    assert settings().flavors["ubuntu"].arch_for("linux/arm/v7").dpkg == "armhf"
    assert settings().flavors["alpine"].arch_for("linux/arm/v7").dpkg == "armv7"


def test_a_build_for_armv7_fetches_gosu_armhf_only():
    req = wiring.build_request(wiring.settings(wiring.project_config()), "alpine", "armhf,armv7", default_arch="amd64")
    assert [a.dpkg for a in req.fetch.arches] == ["armhf"]


def test_a_bad_platform_override_names_the_setting(monkeypatch):
    raw = project_config().images
    raw["flavors"]["ubuntu"]["releases"]["24.04"]["platforms"] = "armhf:linux/arm/v7"
    with pytest.raises(ValueError, match=r"images.flavors.ubuntu.releases.24.04.platforms: 'armhf:linux/arm/v7' is "
                                         "not ARCH=PLATFORM"):
        config.image_settings(raw)


def test_the_base_platform_must_match_its_variant():
    index = {"manifests": [
        {"digest": "sha256:" + "6" * 64, "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
        {"digest": "sha256:" + "8" * 64, "platform": {"os": "linux", "architecture": "arm64"}},
    ]}
    got = (json.dumps(index).encode(), "application/vnd.oci.image.index.v1+json", "sha256:" + "1" * 64)
    v6 = arches.Platform("linux", "arm", "v6")
    assert bases._platform_base("r:1", got, v6, "").digest == "sha256:" + "6" * 64
    assert bases._platform_base("r:1", got, arches.Platform("linux", "arm64", "v8"), "").digest.endswith("8")
    with pytest.raises(bases.MissingPlatform, match="base r:1 has no linux/arm/v7 image"):
        bases._platform_base("r:1", got, arches.Platform("linux", "arm", "v7"), "")
