"""Every release of each flavor: end-of-life dates (distro-info-data, configuration), the default, --release."""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from builder import config, wiring
from builder.config import eol
from builder.image import model, plan
from builder.image.assembly import append
from builder.publish import push as pub
from tests.conftest import ROOT
from tests.support.engine import project_config

E = append.Entrypoint.of({"entrypoint.sh": b"e"})

EDGE = (Path(__file__).parent / "data" / "distro-info-edge.csv").read_text()
TODAY = dt.date(2026, 12, 2)


@pytest.fixture(scope="module")
def info():
    """The pinned distro-info-data, taken through Debian's verified archive chain (cached after the first run)."""
    return wiring.distro_info(wiring.settings(wiring.project_config()))


def edge() -> eol.DistroInfo:
    return eol.DistroInfo("test", {"debian": EDGE})


def test_the_real_package_gives_debian_lts_and_ubuntu_standard_support(info):
    assert info.version == "0.66+deb13u2"
    assert eol.lookup(info, "debian/eol-lts", "bookworm", "k") == \
        eol.Eol(dt.date(2028, 6, 30), "distro-info-data 0.66+deb13u2 debian.csv eol-lts")
    assert eol.lookup(info, "ubuntu/eol", "24.04", "k").date == dt.date(2029, 5, 31)
    assert eol.lookup(info, "ubuntu/eol", "26.04", "k").date == dt.date(2031, 5, 29)


def test_table_edge_cases_name_the_key():
    # Announced without an end-of-life date yet: unknown, not an error.
    assert eol.lookup(edge(), "debian/eol-lts", "forky", "k") is None
    with pytest.raises(eol.EolError, match="images.flavors.x.eol_from: release 'duke' is not in distro-info-data"):
        eol.lookup(edge(), "debian/eol-lts", "duke", "images.flavors.x.eol_from")
    with pytest.raises(eol.EolError, match="debian.csv broken eol is '2033-02-30': give the end-of-life date"):
        eol.lookup(edge(), "debian/eol", "broken", "k")
    with pytest.raises(eol.EolError, match="k is 'debian:eol': give TABLE/COLUMN"):
        eol.lookup(edge(), "debian:eol", "bookworm", "k")
    with pytest.raises(eol.EolError, match="debian.csv has no column 'eol-esm'"):
        eol.lookup(edge(), "debian/eol-esm", "bookworm", "k")
    with pytest.raises(eol.EolError, match="has no version, series and eol columns"):
        eol.lookup(eol.DistroInfo("t", {"debian": "a,b\n1,2\n"}), "debian/eol", "bookworm", "k")


def test_warnings_on_the_way_to_and_past_the_end():
    e = eol.Eol(dt.date(2027, 3, 1), "src")
    assert eol.notice("x", e, dt.date(2026, 11, 30)) == ""
    assert "reaches its end of life in 89 day(s), on 2027-03-01 (src)" in eol.notice("x", e, dt.date(2026, 12, 2))
    assert "reached its end of life on 2027-03-01 (src)" in eol.notice("x", e, dt.date(2027, 3, 1))
    assert eol.from_label(str(e)) == e and eol.from_label("") is None


def settings(info=None, local=True, today=TODAY, **images):
    cfg = project_config()
    raw = cfg.images
    for k, v in images.items():
        raw[k] = v
    return config.image_settings(raw, cfg.local if local else None, info, today)


def test_production_releases_defaults_and_dates(info):
    s = settings(info, local=False)
    assert {n: list(r) for n, r in s.releases.items()} == {
        "minideb": ["trixie", "bookworm"], "ubuntu": ["24.04", "26.04", "22.04"],
        "alpine": ["3.24", "3.23", "3.22", "3.20"]}
    assert {n: f.release for n, f in s.flavors.items()} == {"minideb": "trixie", "ubuntu": "24.04", "alpine": "3.24"}
    assert s.releases["minideb"]["trixie"].eol.date == dt.date(2030, 6, 30)
    assert s.releases["alpine"]["3.20"].eol.past(TODAY) and not s.releases["alpine"]["3.22"].eol.past(TODAY)
    # Locally (bases through the local registry) alpine's default is the release seedable here.
    assert settings(info).flavors["alpine"].release == "3.20"


def test_release_selection_default_all_and_named(info):
    s = settings(info)
    names = lambda spec, flavor=None: [t.name for t in model.select_targets(s, flavor, "amd64", "amd64", spec, TODAY)]
    assert names(None, "minideb") == ["minideb-trixie-amd64"]
    assert names("all", "minideb") == ["minideb-trixie-amd64", "minideb-bookworm-amd64"]
    # all: every release not past its end of life; an EOL one is built when named.
    assert names("all", "alpine") == ["alpine-3.24-amd64", "alpine-3.23-amd64", "alpine-3.22-amd64"]
    assert names("3.20", "alpine") == ["alpine-3.20-amd64"]
    assert names("bookworm,22.04") == ["minideb-bookworm-amd64", "ubuntu-22.04-amd64"]
    with pytest.raises(ValueError, match=r"unknown release 3.19 \(--release\): the releases configured are alpine: "
                                         "3.24, 3.23, 3.22, 3.20"):
        names("3.19", "alpine")


def test_labels_carry_the_release_and_its_end_of_life_and_read_back(info):
    s = settings(info)
    flavor = s.releases["alpine"]["3.20"]
    base = model.Base("127.0.0.1:5000/alpine:3.20", "127.0.0.1:5000/alpine", "sha256:" + "1" * 64,
                      "sha256:" + "2" * 64)
    gosu = plan.Gosu("amd64", "1.19", "a" * 64, "github", "F" * 40, True)
    p = plan.plan_image(model.Target(flavor, model.arches.get("amd64", model.arches.IMAGE_ARCHES)), base, gosu,
                        model.Revision("0" * 40, 1), "org/base-gosu", plan.Account("ops", 1, 1), "u", E)
    labels = plan.to_labels(p)
    assert labels["org.base-gosu.base.release"] == "3.20"
    assert labels["org.base-gosu.base.eol"].startswith("2026-04-01 (alpinelinux.org/releases/")
    back = plan.from_labels(labels, "linux/amd64", settings(info, local=False).flavors, s.releases)
    assert back.target.flavor.release == "3.20" and back.target.flavor.eol == flavor.eol and back.inputs == p.inputs
    # Another EOL date is another image: the label is content.
    later = dataclasses.replace(flavor, eol=eol.Eol(dt.date(2030, 1, 1), "x"))
    assert plan.inputs_digest(dataclasses.replace(p.target, flavor=later), base, gosu, p.account, E) != p.inputs


def test_the_guard_refuses_eol_beyond_the_local_registry_unless_allowed():
    dead, alive = "2026-04-01 (src)", "2030-01-01 (src)"
    elsewhere, local = pub.Destination("127.0.0.1:1", "o/b"), pub.Destination("127.0.0.1:5000", "o/b", True)
    with pytest.raises(pub.PublishError, match=r"o/b:alpine-3.20-amd64: its base release reached its end of life "
                                               r"on 2026-04-01 \(src\) \(and 1 more\).*--allow-eol.*Nothing was pushed"):
        pub.check_eol([("o/b:alpine-3.20-amd64", dead), ("o/b:alpine-3.20-arm64", dead), ("x", alive)], elsewhere,
                      False, TODAY)
    pub.check_eol([("x", dead)], elsewhere, True, TODAY)
    pub.check_eol([("x", dead)], local, False, TODAY)
    pub.check_eol([("x", alive), ("y", "")], elsewhere, False, TODAY)


def invoke(*args, env=None):
    import os
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


@pytest.mark.parametrize("env,message", [
    ({"INVOKE_IMAGES_FLAVORS_MINIDEB_DEFAULT": "sid"},
     "images.flavors.minideb.default is 'sid', which is not one of images.flavors.minideb.releases: trixie, bookworm"),
    ({"INVOKE_IMAGES_FLAVORS_MINIDEB_RELEASES_BOOKWORM_ARCHES": ""},
     "images.flavors.minideb.releases.bookworm.arches is empty"),
    ({"INVOKE_IMAGES_FLAVORS_ALPINE_RELEASES_3.22_EOL": "2027-13-01"},
     "images.flavors.alpine.releases.3.22.eol is '2027-13-01': give the end-of-life date as YYYY-MM-DD"),
    # Elsewhere (not through the local registry) the configured default counts, and it must be alive.
    ({"INVOKE_IMAGES_BASE_MIRROR": "", "INVOKE_IMAGES_FLAVORS_ALPINE_DEFAULT": "3.20"},
     "images.flavors.alpine.default is '3.20', which reached its end of life on 2026-04-01"),
])
def test_bad_release_configuration_is_one_line_naming_the_key(env, message):
    r = invoke("releases", env=env)
    assert r.returncode == 2 and r.stderr.strip() == f"releases: error: {r.stderr.split('error: ', 1)[1].strip()}"
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_an_unknown_release_on_the_command_line_is_a_usage_error():
    r = invoke("build", "--flavor", "minideb", "--release", "buster")
    assert r.returncode == 2 and "build: error: unknown release buster (--release)" in r.stderr, r.stderr


def test_releases_prints_the_table():
    r = invoke("releases")
    assert r.returncode == 0, r.stderr
    rows = {tuple(c.strip() for c in line.strip("|").split("|"))[:2]: line for line in r.stdout.splitlines()
            if line.startswith("| ")}
    assert ("alpine", "3.20") in rows and "EOL (" in rows["alpine", "3.20"] and "yes (minirootfs 3.20.3)" in \
        rows["alpine", "3.20"]
    assert "no (no minirootfs tarballs here)" in rows["alpine", "3.24"]
    assert "2030-06-30" in rows["minideb", "trixie"] and "| yes " in rows["minideb", "trixie"]
    assert "defaults here: local defaults (local.default_releases" in r.stdout


def test_a_release_that_cannot_be_seeded_here_says_so():
    r = invoke("build", "--flavor", "alpine", "--release", "3.24", "--arch", "amd64")
    assert r.returncode == 1 and ("build: error: alpine 3.24 (alpine:3.24) is not seedable here (no minirootfs "
                                  "tarballs here); it stays configured for production") in r.stderr, r.stderr
