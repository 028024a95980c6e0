"""Seeding the local registry's bases, per (base, arch), into a registry each test starts on loopback."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from builder.core import arches, filelock, oci
from builder import config
from builder.image import model
from builder.local import bootstrap, setup as local, rootfs, seed, seedimage
from builder.core.host import SetupError
from builder.core.registry import Registry
from builder.config.settings import CHROOTLESS, DEBIAN_MODES, EMULATED

from tests.conftest import ROOT, skip_or_fail
from tests.support.binfmt import handlers_held
from tests.support.debproxy import PartialMirror
from tests.support.engine import project_config, rig  # noqa: F401 - the session fixture
from tests.support.registries import free_port

ALPINE_ARCHES = ("amd64", "arm64", "armhf", "armv7", "i386", "ppc64el", "riscv64", "s390x")


@pytest.fixture(autouse=True)
def _qemu_handlers_stay_on():
    """A foreign tree's own ldconfig (and an emulated bootstrap's every script) runs under qemu."""
    with handlers_held():
        yield


@pytest.fixture
def settings(tmp_path):
    """(LocalSettings, ImageSettings) pointed at a registry of this test's own, on a free loopback port."""
    if not shutil.which("docker-registry"):
        skip_or_fail("docker-registry is not installed; run `invoke up`")
    cfg = project_config()
    s = config.local_settings(cfg.local)
    if not (s.alpine_dir / "checksums.sha512").is_file():
        skip_or_fail(f"{s.alpine_dir} has no Alpine release (../shared/rootfs/alpine-3.20.3)")
    port = free_port()
    pid = local.start_registry(tmp_path / "registry", f"127.0.0.1:{port}")
    image_settings = dataclasses.replace(config.image_settings(cfg.images, cfg.local), base_mirror=f"127.0.0.1:{port}")
    yield dataclasses.replace(s, registry_port=port, state_dir=tmp_path / "state"), image_settings
    os.kill(pid, signal.SIGTERM)


def seed_named(local_settings, image_settings, kind) -> seedimage.Seed:
    return next(s for s in seedimage.seeds(local_settings, image_settings) if s.kind == kind)


def _only(image_settings, flavor):
    return dataclasses.replace(image_settings, flavors={flavor: image_settings.flavors[flavor]})


def index(local_settings, s: seedimage.Seed) -> tuple[dict, str]:
    got = oci.read_index(Registry(local_settings.registry), s.repo, s.tags[0])
    assert got is not None, f"no index at {local_settings.registry}/{s.name}"
    return got


def alpine_copy(tmp_path, local_settings, drop=(), tamper=()):
    """A copy of the Alpine release directory, without the arches in `drop`, with those in `tamper` changed."""
    d = tmp_path / "alpine"
    shutil.copytree(local_settings.alpine_dir, d)
    for arch in drop:
        (d / rootfs.alpine_name(local_settings.alpine_version, arch)).unlink()
    for arch in tamper:
        f = d / rootfs.alpine_name(local_settings.alpine_version, arch)
        f.chmod(0o644)
        data = bytearray(f.read_bytes())
        data[-100] ^= 0xFF
        f.write_bytes(bytes(data))
    return dataclasses.replace(local_settings, alpine_dir=d)


def test_alpine_every_arch_is_its_tarball_pushed_as_is_and_a_second_run_seeds_nothing(settings):
    s, image_settings = settings
    alpine = seed_named(s, image_settings, "alpine")
    out = seed.seed_base(s, alpine, list(ALPINE_ARCHES), io.StringIO())
    assert out.seeded == list(ALPINE_ARCHES)
    doc, digest = index(s, alpine)
    reg = Registry(s.registry)
    platforms = {}
    for d in doc["manifests"]:
        cfg = oci.child_config(reg, alpine.repo, d["digest"])
        p = d["platform"]
        assert (cfg["os"], cfg["architecture"], cfg.get("variant")) == (p["os"], p["architecture"], p.get("variant"))
        assert cfg["config"]["Cmd"] == ["/bin/sh"]
        platforms["/".join([p["os"], p["architecture"]] + ([p["variant"]] if p.get("variant") else []))] = (d, cfg)
    assert set(platforms) == {"linux/amd64", "linux/arm64/v8", "linux/arm/v6", "linux/arm/v7", "linux/386",
                              "linux/ppc64le", "linux/riscv64", "linux/s390x"}
    for arch in ALPINE_ARCHES:
        platform = str(alpine.flavor.platform_of(arches.get(arch, arches.IMAGE_ARCHES)))
        d, cfg = platforms[platform]
        tarball = (s.alpine_dir / rootfs.alpine_name(s.alpine_version, arch)).read_bytes()
        manifest = json.loads(reg.get_manifest(alpine.repo, d["digest"])[0])
        assert [layer["digest"] for layer in manifest["layers"]] == ["sha256:" + hashlib.sha256(tarball).hexdigest()]
        assert cfg["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(gzip.decompress(tarball)).hexdigest()]
    # 3.20.3 names the same index as 3.20.
    assert reg.get_manifest(alpine.repo, s.alpine_version)[2] == digest

    again = io.StringIO()
    seed.seed(dataclasses.replace(s, arches=ALPINE_ARCHES), _only(image_settings, "alpine"), again)
    assert f"{s.registry}/{alpine.name} already seeded for {', '.join(ALPINE_ARCHES)}; nothing to do" in again.getvalue()
    assert "added" not in again.getvalue()
    assert index(s, alpine)[1] == digest


def test_one_more_arch_adds_one_child_and_keeps_the_others_byte_identical(settings):
    s, image_settings = settings
    alpine = seed_named(s, image_settings, "alpine")
    seed.seed_base(s, alpine, ["amd64"], io.StringIO())
    before, first = index(s, alpine)
    [amd64] = before["manifests"]
    assert amd64["annotations"][seed.RECIPE].startswith("sha256:")
    out = seed.seed_base(s, alpine, ["amd64", "riscv64"], io.StringIO())
    assert (out.seeded, out.already) == (["riscv64"], ["amd64"])
    after, second = index(s, alpine)
    assert second != first  # a new index, as the module docstring says
    assert [d["platform"]["architecture"] for d in after["manifests"]] == ["amd64", "riscv64"]
    assert oci.canonical(after["manifests"][0]) == oci.canonical(amd64)


def test_a_seed_of_an_index_another_run_is_seeding_waits_then_both_runs_arches_are_in_it(settings):
    s, image_settings = settings
    alpine = seed_named(s, image_settings, "alpine")
    ref = f"{s.registry}/{alpine.name}"
    log, seeded = io.StringIO(), {}
    with filelock.held(filelock.path_for(s.state_dir, ref), io.StringIO(), "unused"):   # the other run
        waiter = threading.Thread(target=lambda: seeded.update(
            first=seed.seed_base(s, alpine, ["amd64", "s390x"], log)))
        waiter.start()
        for _ in range(200):
            if "waiting" in log.getvalue():
                break
            time.sleep(0.05)
        assert log.getvalue() == f"seed: {ref}: another run is seeding it; waiting for it to finish\n"
        assert oci.read_index(Registry(s.registry), alpine.repo, alpine.tags[0]) is None, "nothing pushed yet"
    waiter.join(timeout=120)
    assert seeded["first"].seeded == ["amd64", "s390x"]
    # Two runs at once, each adding arches of its own: the index ends with every one of them.
    runs = [threading.Thread(target=seed.seed_base, args=(s, alpine, arch_names, io.StringIO()))
            for arch_names in (["riscv64", "i386"], ["ppc64el", "armhf"])]
    for t in runs:
        t.start()
    for t in runs:
        t.join(timeout=120)
    doc, _ = index(s, alpine)
    assert sorted(d["platform"]["architecture"] for d in doc["manifests"]) == \
        ["386", "amd64", "arm", "ppc64le", "riscv64", "s390x"]


def test_a_tampered_tarball_is_refused_by_name_and_nothing_is_pushed(settings, tmp_path):
    s, image_settings = settings
    s = alpine_copy(tmp_path, s, tamper=("s390x",))
    alpine = seed_named(s, image_settings, "alpine")
    with pytest.raises(local.SetupError) as e:
        seed.seed_base(s, alpine, ["amd64", "s390x"], io.StringIO())
    assert f"{s.alpine_dir / 'alpine-minirootfs-3.20.3-s390x.tar.gz'}: sha512" in str(e.value)
    assert "refusing to seed from it" in str(e.value)
    assert Registry(s.registry).get_manifest(alpine.repo, alpine.tags[0]) is None


def test_an_arch_without_its_tarball_is_not_seedable_here_and_the_others_are_seeded(settings, tmp_path):
    s, image_settings = settings
    s = alpine_copy(tmp_path, s, drop=("riscv64",))
    alpine = seed_named(s, image_settings, "alpine")
    log = io.StringIO()
    out = seed.seed_base(s, alpine, ["amd64", "riscv64"], log)
    assert out.seeded == ["amd64"]
    [line] = out.unseedable
    assert "linux/riscv64: riscv64: not seedable here" in line and "alpine-minirootfs-3.20.3-riscv64.tar.gz" in line
    # It stays in the production configuration; a build that needs it here gets the same clear message.
    assert "riscv64" in alpine.flavor.arches
    target = model.Target(alpine.flavor, arches.get("riscv64", arches.IMAGE_ARCHES))
    with pytest.raises(local.SetupError, match="riscv64: not seedable here"):
        seed.ensure_bases(s, image_settings, [target], io.StringIO())


def test_ensure_bases_never_seeds_a_registry_other_than_the_local_one(settings):
    s, image_settings = settings
    elsewhere = dataclasses.replace(image_settings, base_mirror="127.0.0.1:1")
    target = model.Target(seed_named(s, image_settings, "alpine").flavor, arches.get("amd64"))
    assert seed.ensure_bases(s, elsewhere, [target], io.StringIO()) == []
    assert Registry(s.registry).get_manifest("alpine", "3.20") is None


@pytest.mark.engine
def test_a_build_for_an_arch_the_registry_lacks_seeds_its_base_first_and_says_so(settings, rig):
    s, _ = settings
    env = {**os.environ, "INVOKE_LOCAL_REGISTRY_PORT": str(s.registry_port),
           "INVOKE_IMAGES_BASE_MIRROR": s.registry, "INVOKE_LOCAL_STATE_DIR": str(s.state_dir),
           "INVOKE_IMAGES_REPOSITORY": "test-seed/base-gosu"}
    o = rig.gosu_overrides
    p = subprocess.run([sys.executable, "-m", "invoke", "build", "--flavor", "alpine", "--arch", "arm64",
                        "--gosu-version", o["gosu_version"], "--mirror", o["mirror"], "--key", o["key"],
                        "--fingerprint", o["fingerprint"]], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert (f"seed: {s.registry}/alpine:3.20 has no linux/arm64/v8 image; seeding it from "
            "alpine-minirootfs-3.20.3-aarch64.tar.gz") in p.stdout
    built = rig.engine.inspect("test-seed/base-gosu:alpine-3.20-arm64")
    assert built["Config"]["Labels"]["org.opencontainers.image.base.name"] == f"{s.registry}/alpine:3.20"
    rig.engine.run("rmi", "test-seed/base-gosu:alpine-3.20-arm64", check=False)


class _Stop(Exception):
    pass


def test_a_debian_childs_recipe_is_read_after_the_tools_it_names_are_installed(settings, monkeypatch):
    """The recipe names the bootstrap tools' versions. On a bare machine the first seed installs them; read
    before, its children would be named after tools it did not have, and the next run would make them all again."""
    s, image_settings = settings
    calls = []
    monkeypatch.setattr(bootstrap, "install_tools", lambda *a, **k: calls.append("install the tools"))
    versions = rootfs.host_tools
    monkeypatch.setattr(rootfs, "host_tools", lambda: calls.append("read their versions") or versions())

    def stop(*a, **k):
        raise _Stop
    monkeypatch.setattr(bootstrap, "prepare", stop)  # the bootstrap itself is not what this is about
    with pytest.raises(_Stop):
        seed.seed_base(s, seed_named(s, image_settings, "ubuntu"), ["amd64"], io.StringIO())
    assert calls[:1] == ["install the tools"] and "read their versions" in calls, calls


def test_the_ubuntu_standin_for_armhf_is_debian_arm_v7_plus_user_ubuntu(settings):
    """One Debian bootstrap under emulation (kept in the project's seed cache, so only a cold run pays it)."""
    s, image_settings = settings
    s = dataclasses.replace(s, state_dir=config.local_settings(project_config().local).state_dir)
    ubuntu = seed_named(s, image_settings, "ubuntu")
    seed.seed_base(s, ubuntu, ["armhf"], io.StringIO())
    doc, _ = index(s, ubuntu)
    [child] = doc["manifests"]
    assert child["platform"] == {"os": "linux", "architecture": "arm", "variant": "v7"}
    reg = Registry(s.registry)
    cfg = oci.child_config(reg, ubuntu.repo, child["digest"])
    assert cfg["config"]["Labels"][seedimage.STANDIN] == ("Debian trixie minbase plus user ubuntu 1000:1000, "
                                                     "a stand-in for ubuntu:24.04 armhf")
    manifest = json.loads(reg.get_manifest(ubuntu.repo, child["digest"])[0])
    debian, user = (reg.get_blob(ubuntu.repo, layer["digest"]) for layer in manifest["layers"])
    with tarfile.open(fileobj=io.BytesIO(user)) as t:
        passwd = t.extractfile("etc/passwd").read().decode()
        home = t.getmember("home/ubuntu")
    assert passwd.endswith("ubuntu:x:1000:1000:Ubuntu:/home/ubuntu:/bin/bash\n")
    assert (home.uid, home.gid) == (1000, 1000)
    with tarfile.open(fileobj=io.BytesIO(debian)) as t:
        names = t.getnames()
        # The arch's own binaries: 32-bit ARM ELF (e_machine 40).
        sh = t.extractfile(t.getmember("./usr/bin/dash")).read(20)
    assert sh[:4] == b"\x7fELF" and int.from_bytes(sh[18:20], "little") == 40
    assert not [n for n in names if n.startswith("./dev/") or n == "./etc/resolv.conf"]


def test_a_mirror_that_lacks_a_listed_package_is_named_with_the_file_and_leaves_no_layer(settings, tmp_path):
    """A mirror mid-sync: its index names a libc6 its pool does not serve. The error says which mirror, which file
    and what to do, in one message rather than the tail of mmdebstrap's log, and nothing is cached."""
    s, _ = settings
    cache = tmp_path / "seed-cache"
    with PartialMirror(s.debian_mirror, missing=("libc6_",)) as mirror:
        with pytest.raises(SetupError) as e:
            rootfs.debian_layer(seedimage.method(s), "trixie", "amd64", mirror.url, cache, io.StringIO())
    assert mirror.refused, "the bootstrap asked for libc6"
    message = str(e.value)
    wanted = mirror.refused[0].rsplit("/", 1)[-1]
    assert f"{mirror.url} lists 1 trixie amd64 package(s) it does not serve (404), e.g. {wanted}" in message
    assert "local.debian_mirror" in message and "\n" not in message
    assert not [p for p in cache.iterdir() if not p.name.startswith(".")], "no layer or meta is left in the cache"
    assert not list(cache.iterdir()), "nor a half-bootstrapped tree"


def test_arches_made_side_by_side_give_the_index_one_at_a_time_gives(settings):
    """local.seed_jobs: children finish in any order, and the index (sorted by platform) is the same bytes."""
    s, image_settings = settings
    s = dataclasses.replace(s, state_dir=config.local_settings(project_config().local).state_dir)
    ubuntu = seed_named(s, image_settings, "ubuntu")
    got = {}
    for jobs in (1, 2):
        one = dataclasses.replace(ubuntu, name=f"jobs-{jobs}/{ubuntu.name}")
        out = seed.seed_base(dataclasses.replace(s, seed_jobs=jobs), one, ["amd64", "armhf"], io.StringIO())
        assert out.seeded == ["amd64", "armhf"]
        got[jobs] = index(s, one)[0]
    assert got[1] == got[2]
    assert [m["platform"].get("architecture") for m in got[2]["manifests"]] == ["amd64", "arm"]


def test_seed_jobs_must_be_a_whole_number_and_the_error_names_the_key():
    local = dict(project_config().local, seed_jobs="two")
    with pytest.raises(ValueError, match=r"^local.seed_jobs is 'two': give a whole number of bootstraps"):
        config.local_settings(local)


def _tree(blob: bytes) -> dict[str, tuple]:
    """Each entry of a layer as what it is (type, mode, owners, link, content), whatever its mtime."""
    out = {}
    with tarfile.open(fileobj=io.BytesIO(blob)) as t:
        for ti in t:
            data = hashlib.sha256(t.extractfile(ti).read()).hexdigest() if ti.isfile() else ""
            out[ti.name] = (ti.type, ti.mode, ti.uid, ti.gid, ti.linkname, data)
    return out


def test_a_chrootless_arm64_tree_is_the_emulated_one_with_its_libraries_indexed(settings):
    """Both kept in the project's seed cache: only a cold run bootstraps (the emulated one under qemu)."""
    s, _ = settings
    cache = config.local_settings(project_config().local).state_dir / "rootfs"
    log = io.StringIO()
    made = {mode: rootfs.debian_layer(rootfs.Method("mmdebstrap", mode), "trixie", "arm64", s.debian_mirror, cache,
                                      log) for mode in DEBIAN_MODES}
    chrootless, emulated = made[CHROOTLESS], made[EMULATED]
    assert chrootless.key != emulated.key
    assert "by mmdebstrap chrootless from" in chrootless.source and "chrootless" not in emulated.source
    got, want = _tree(gzip.decompress(chrootless.blob)), _tree(gzip.decompress(emulated.blob))
    assert sorted(set(got) ^ set(want)) == []
    assert {n: (want[n], got[n]) for n in got if got[n] != want[n]} == {}
    # Every mtime is clamped to the same Release date, so the same tree is the same layer.
    assert chrootless.diff_id == emulated.diff_id
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(chrootless.blob))) as t:
        cache_file = t.extractfile("./etc/ld.so.cache").read()
        ld = t.extractfile("./usr/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1").read(20)
    # The target's ldconfig indexed the arch's libraries; the host's would leave a bare header (139 bytes).
    assert b"/lib/aarch64-linux-gnu/libc.so.6" in cache_file and b"ldconfig (Debian GLIBC 2.41" in cache_file
    assert int.from_bytes(ld[18:20], "little") == 183  # EM_AARCH64


def test_a_suite_chrootless_cannot_make_is_refused_in_one_line_naming_suite_arch_and_package(settings, tmp_path):
    """bullseye's essential packages predate DPKG_ROOT support (bash, base-files, base-passwd...).
    Run as nobody, the scripts that ignore DPKG_ROOT fail on the host's files instead of rewriting them."""
    s, _ = settings
    cache = tmp_path / "seed-cache"
    passwd = Path("/etc/passwd").read_bytes()
    with pytest.raises(bootstrap.Refused) as e:
        rootfs.debian_layer(rootfs.Method("mmdebstrap", CHROOTLESS, ("bookworm",)), "bullseye", "amd64",
                            s.debian_mirror, cache, io.StringIO())
    message = str(e.value)
    assert message.startswith("mmdebstrap --mode=chrootless cannot make Debian bullseye amd64: the "), message
    # Which fails first is dpkg's order; these two fail whichever it is.
    assert "script of bash" in message or ", bash" in message, message
    assert "script of base-passwd" in message or ", base-passwd" in message, message
    assert "fails without the target's own binaries (it is not DPKG_ROOT-safe)" in message
    assert "local.emulation_fallback (bullseye or bullseye/amd64)" in message and "\n" not in message
    assert not list(cache.iterdir()), "nothing half-made is left in the cache"
    assert Path("/etc/passwd").read_bytes() == passwd


def test_where_the_configuration_allows_it_a_refused_suite_is_made_emulated_and_its_recipe_says_so(settings):
    """bullseye amd64: native, so its emulated bootstrap needs no qemu; the minideb stand-in pointed at it."""
    s, image_settings = settings
    s = dataclasses.replace(s, emulation_fallback=("bullseye/amd64",))
    minideb = dataclasses.replace(seed_named(s, image_settings, "debian"), suite="bullseye")
    platform = minideb.flavor.platform_of(arches.get("amd64", arches.IMAGE_ARCHES))
    chrootless_recipe = seedimage.recipe(s, minideb, "amd64", platform)
    log = io.StringIO()
    out = seed.seed_base(s, minideb, ["amd64"], log)
    assert out.seeded == ["amd64"]
    [line] = [x for x in log.getvalue().splitlines() if "cannot make Debian bullseye amd64" in x]
    assert line.endswith("local.emulation_fallback allows it, so it is made under emulation")
    [child] = index(s, minideb)[0]["manifests"]
    emulated_key = rootfs.debian_key("mmdebstrap", "bullseye", "amd64", s.debian_mirror, EMULATED)
    assert child["annotations"][seed.RECIPE] == seedimage.recipe(s, minideb, "amd64", platform, emulated_key)
    assert child["annotations"][seed.RECIPE] != chrootless_recipe
    assert seedimage.debian_mode(s, minideb, "amd64") == EMULATED
    again = seed.seed_base(s, minideb, ["amd64"], io.StringIO())
    assert (again.seeded, again.already) == ([], ["amd64"])
    # Where it is not allowed, the same marker changes nothing: chrootless is tried (and refused) again.
    strict = dataclasses.replace(s, emulation_fallback=("bookworm",))
    assert seedimage.debian_mode(strict, minideb, "amd64") == CHROOTLESS


@pytest.mark.parametrize("key,value,error", [
    ("debian_mode", "qemu", r"^local.debian_mode is 'qemu': use one of chrootless, emulated$"),
    ("emulation_fallback", "bookworm/arm", r"^local.emulation_fallback: 'bookworm/arm' is not all, SUITE or SUITE/ARCH"),
    ("debian_bootstrap", "debootstrap", r"^local.debian_mode is chrootless, which debootstrap cannot do"),
])
def test_the_bootstrap_mode_settings_are_checked_and_the_error_names_the_key(key, value, error):
    with pytest.raises(ValueError, match=error):
        config.local_settings(dict(project_config().local, **{key: value}))


def test_a_second_chrootless_bootstrap_gives_the_same_layer(settings, tmp_path):
    """Reproducible: the same archive state (mtimes clamped to its Release date) gives the same bytes."""
    s, _ = settings
    method = rootfs.Method("mmdebstrap", CHROOTLESS)
    first, second = (rootfs.debian_layer(method, "bookworm", "amd64", s.debian_mirror, tmp_path / name, io.StringIO())
                     for name in ("first", "second"))
    assert first.epoch == second.epoch, "the mirror published a new bookworm Release in between; run it again"
    assert first.digest == second.digest
