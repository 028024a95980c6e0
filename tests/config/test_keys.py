"""A configuration key or INVOKE_* variable the project does not read is refused, naming it (and, for a key that
moved, where it lives now), before anything is fetched."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from builder.config import keys
from tests.conftest import ROOT

PROJECT = yaml.safe_load((ROOT / "invoke.yaml").read_text())
INVOKE_OWN = {"run", "runners", "sudo", "tasks", "timeouts"}


@pytest.mark.parametrize("extra, problem", [
    ({"images": {"flavors": {"alpine": {"base": "evil/alpine:3.20"}}}},
     "images.flavors.alpine.base: moved to images.flavors.<flavor>.releases.<release>.base"),
    ({"images": {"flavors": {"ubuntu": {"arches": "amd64"}}}},
     "images.flavors.ubuntu.arches: moved to images.flavors.<flavor>.releases.<release>.arches"),
    ({"images": {"flavorz": {}}}, "images.flavorz: not a key this project reads"),
    ({"gosu": {"debian": {"mirorr": "http://x"}}}, "gosu.debian.mirorr: not a key this project reads"),
    ({"images": {"flavors": {"alpine": {"releases": {"3.20": {"bsae": "x"}}}}}},
     "images.flavors.alpine.releases.3.20.bsae: not a key this project reads"),
    ({"tools": {"cosign": {"pins": {"amd64": {"sha256": "x"}}}}}, "tools.cosign.pins.amd64.sha256: not a key"),
    ({"vulns": {"db": ""}}, "vulns: not a key this project reads"),
], ids=["flavor-base-moved", "flavor-arches-moved", "images-flavorz", "gosu-debian-mirorr", "release-bsae",
        "tool-pin-sha256", "top-level-vulns"])
def test_a_key_nobody_reads_is_named(extra, problem):
    found = keys.unknown(merge(PROJECT, extra), PROJECT, INVOKE_OWN)
    assert len(found) == 1 and found[0].startswith(problem), found


@pytest.mark.parametrize("extra", [
    {"images": {"flavors": {"wolfi": {"default": "1", "eol_from": "", "releases": {"1": {"base": "w:1"}}}}}},
    {"images": {"flavors": {"minideb": {"releases": {"forky": {"base": "b", "eol": "2031-06-30"}}}}}},
    {"images": {"nss_wrapper": {"pins": {"mips64el": {"version": "1", "suite": "s", "deb_sha256": "0"}}}}},
    {"run": {"echo": True}},
    {},
], ids=["new-flavor", "new-release-with-eol", "new-pin-arch", "invoke-own-section", "nothing-extra"])
def test_keys_users_choose_and_invokes_own_pass(extra):
    assert keys.unknown(merge(PROJECT, extra), PROJECT, INVOKE_OWN) == []


@pytest.mark.parametrize("name, refused", [
    ("INVOKE_IMAGES_FLAVORZ", True), ("INVOKE_GOSU_MIRORR", True), ("INVOKE_GOSU_DEBIAN_MIRROR", False),
    ("INVOKE_PUBLISH_REGISTRY", False), ("INVOKE_RUNTIME_CONFIG", False), ("INVOKE_RUN_ECHO", False),
], ids=lambda v: str(v))
def test_an_invoke_variable_that_names_no_key_is_named(name, refused):
    found = keys.unknown_env({name: "x", "PATH": "/bin"}, PROJECT, {"run": {"echo": False}}, PROJECT)
    assert bool(found) is refused and (not found or name in found[0])


def merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out.get(k) or {}, v) if isinstance(v, dict) else v
    return out


@pytest.mark.parametrize("runtime, line", [
    ({"images": {"flavors": {"alpine": {"base": "evil/alpine:3.20"}}}},
     "build: error: images.flavors.alpine.base: moved to images.flavors.<flavor>.releases.<release>.base"),
    ({"images": {"flavorz": {"alpine": {}}}}, "build: error: images.flavorz: not a key this project reads"),
], ids=["moved-base", "flavorz"])
def test_invoke_build_exits_2_with_one_line_before_anything_is_fetched(tmp_path, runtime, line):
    (tmp_path / "runtime.yaml").write_text(yaml.safe_dump(runtime))
    cache = tmp_path / "gosu-cache"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("INVOKE_")},
           "INVOKE_GOSU_CACHE_DIR": str(cache)}
    done = subprocess.run([sys.executable, "-m", "invoke", "-f", str(tmp_path / "runtime.yaml"), "build",
                           "--flavor", "alpine", "--arch", "amd64", "--source", "debian"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [line + " (check its spelling against "
                                                                                "invoke.yaml)" if "flavorz" in line
                                                                         else line], done.stderr
    assert not cache.exists()
