"""nss_wrapper from Debian's archive: pinned per arch (version, suite, .deb sha256), checked through the chain."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import lzma

import pytest

from builder import config
from builder.core import arches
from builder.image import nsswrapper
from builder.image.assembly import append
from builder.config.settings import NssSettings, Pin
from builder.image.nsswrapper import NssWrapperError

from tests.support.engine import ARCHES, project_config, rig  # noqa: F401 - fixture
from tests.support.fakearchive import make_deb
from tests.support.gpgkit import GpgTestKey, clearsign
from tests.support.httpmirror import Mirror


@pytest.fixture(scope="module")
def key():
    k = GpgTestKey.generate("Library Archive <lib@test.invalid>")
    yield k
    k.close()


def add_suite(root, key, suite: str, debs: dict[str, tuple[str, bytes]]) -> dict[str, str]:
    """dists/<suite> listing libnss-wrapper (arch -> (version, .deb)), clearsigned; arch -> the .deb's sha256."""
    dists, lines = root / "dists" / suite, []
    for arch, (version, deb) in debs.items():
        filename = f"pool/main/n/nss-wrapper/libnss-wrapper_{version}_{arch}.deb"
        (root / filename).parent.mkdir(parents=True, exist_ok=True)
        (root / filename).write_bytes(deb)
        packages = (f"Package: libnss-wrapper\nVersion: {version}\nArchitecture: {arch}\nFilename: {filename}\n"
                    f"Size: {len(deb)}\nSHA256: {hashlib.sha256(deb).hexdigest()}\n").encode()
        (dists / "main" / f"binary-{arch}").mkdir(parents=True, exist_ok=True)
        xz = lzma.compress(packages)
        (dists / "main" / f"binary-{arch}" / "Packages.xz").write_bytes(xz)
        lines += [f" {hashlib.sha256(xz).hexdigest()} {len(xz)} main/binary-{arch}/Packages.xz",
                  f" {hashlib.sha256(packages).hexdigest()} {len(packages)} main/binary-{arch}/Packages"]
    (dists / "Release").write_text(f"Suite: {suite}\nSHA256:\n" + "\n".join(lines) + "\n")
    clearsign(key, dists / "Release", dists / "InRelease")
    return {arch: hashlib.sha256(deb).hexdigest() for arch, (_, deb) in debs.items()}


def lib_deb(arch: str, payload: bytes) -> bytes:
    return make_deb({f"./usr/lib/{nsswrapper.MULTIARCH[arch]}/libnss_wrapper.so": payload,
                     "./usr/share/doc/libnss-wrapper/copyright": b"x"})


def settings(tmp_path, key, mirror: str, pins: dict[str, Pin]) -> NssSettings:
    return NssSettings(tmp_path / "cache", mirror, ((key.export(tmp_path / "k.asc"), key.fingerprint),),
                                  "libnss-wrapper", ("minideb", "ubuntu"), pins, timeout=5, retries=1, backoff=0.01)


def test_each_arch_from_its_pinned_suite_once_then_from_the_cache(tmp_path, key):
    root = tmp_path / "archive"
    old = add_suite(root, key, "bookworm", {"amd64": ("1.1.12-1", lib_deb("amd64", b"lib amd64"))})
    new = add_suite(root, key, "trixie", {"riscv64": ("1.1.16-1", lib_deb("riscv64", b"lib riscv64"))})
    pins = {"amd64": Pin("1.1.12-1", old["amd64"], "bookworm"), "riscv64": Pin("1.1.16-1", new["riscv64"], "trixie")}
    with Mirror(root) as m:
        s, log = settings(tmp_path, key, m.url, pins), io.StringIO()
        got = nsswrapper.fetch(s, ["amd64", "riscv64", "amd64"], log)
        assert {a: (n.version, n.suite, n.data) for a, n in got.items()} == {
            "amd64": ("1.1.12-1", "bookworm", b"lib amd64"), "riscv64": ("1.1.16-1", "trixie", b"lib riscv64")}
        assert got["riscv64"].sha256 == hashlib.sha256(b"lib riscv64").hexdigest()
        assert got["amd64"].purl == "pkg:deb/debian/libnss-wrapper@1.1.12-1?arch=amd64"
        assert "libnss-wrapper 1.1.16-1 (riscv64) from trixie, verified InRelease by" in log.getvalue()
        m.requests.clear()
        assert nsswrapper.fetch(s, ["amd64", "riscv64"], io.StringIO()) == got and m.requests == []
        # A cached .deb whose bytes changed is not used: it is taken from the archive again.
        (tmp_path / "cache" / "sha256" / old["amd64"]).write_bytes(b"tampered")
        assert nsswrapper.fetch(s, ["amd64"], io.StringIO())["amd64"].data == b"lib amd64" and m.requests


def test_a_pin_the_signed_index_does_not_list_is_refused_and_nothing_is_cached(tmp_path, key):
    root = tmp_path / "archive"
    sha = add_suite(root, key, "bookworm", {"arm64": ("1.1.12-1", lib_deb("arm64", b"lib"))})["arm64"]
    with Mirror(root) as m:
        wrong = settings(tmp_path, key, m.url, {"arm64": Pin("1.1.12-1", "0" * 64, "bookworm")})
        with pytest.raises(NssWrapperError, match=r"^libnss-wrapper 1.1.12-1 \(arm64\): the signed index of "
                           r"bookworm lists .* with sha256 " + sha + r", but images.nss_wrapper.pins.arm64 pins "
                           "0000.*refusing it"):
            nsswrapper.fetch(wrong, ["arm64"], io.StringIO())
        other = settings(tmp_path, key, m.url, {"arm64": Pin("1.1.11-1", sha, "bookworm")})
        with pytest.raises(NssWrapperError, match=r"\(arm64\): dists/bookworm carries 1.1.12-1, not the pinned "
                           "1.1.11-1; review the new package and update images.nss_wrapper.pins.arm64"):
            nsswrapper.fetch(other, ["arm64"], io.StringIO())
    # Only the verified InRelease is kept; no .deb.
    assert not (tmp_path / "cache" / "sha256" / sha).exists() and len(list((tmp_path / "cache").glob("sha256/*"))) == 1


def test_an_archive_served_with_other_bytes_or_signed_by_another_key_is_refused(tmp_path, key):
    root = tmp_path / "archive"
    sha = add_suite(root, key, "bookworm", {"s390x": ("1.1.12-1", lib_deb("s390x", b"lib"))})["s390x"]
    pins = {"s390x": Pin("1.1.12-1", sha, "bookworm")}
    deb = root / "pool/main/n/nss-wrapper/libnss-wrapper_1.1.12-1_s390x.deb"
    deb.write_bytes(deb.read_bytes()[:-1] + b"!")     # a mirror serving other bytes under the listed name
    with Mirror(root) as m, pytest.raises(NssWrapperError, match=r"^libnss-wrapper \(s390x\) could not be taken "
                                          "from Debian's archive: .*checksum mismatch"):
        nsswrapper.fetch(settings(tmp_path, key, m.url, pins), ["s390x"], io.StringIO())
    other = GpgTestKey.generate("Other <other@test.invalid>")
    try:
        s = dataclasses.replace(settings(tmp_path, key, str(root), pins),
                                archive_keys=((other.export(tmp_path / "o.asc"), other.fingerprint),))
        with pytest.raises(NssWrapperError, match="wrong key"):
            nsswrapper.fetch(s, ["s390x"], io.StringIO())
    finally:
        other.close()
    assert not (tmp_path / "cache" / "sha256" / sha).exists()


def test_a_missing_pin_or_library_names_the_arch_and_the_fix(tmp_path, key):
    root = tmp_path / "archive"
    sha = add_suite(root, key, "bookworm", {"armhf": ("1.1.12-1", make_deb({"./usr/lib/x": b"no lib"}))})["armhf"]
    s = settings(tmp_path, key, str(root), {"armhf": Pin("1.1.12-1", sha, "bookworm")})
    with pytest.raises(NssWrapperError, match=r"no pinned package for i386 \(images.nss_wrapper.pins\)"):
        nsswrapper.fetch(s, ["armhf", "i386"], io.StringIO())
    with pytest.raises(NssWrapperError, match=r"\(armhf\): the .deb has no /usr/lib/arm-linux-gnueabihf/"
                       "libnss_wrapper.so; pin a build that ships the library at"):
        nsswrapper.fetch(s, ["armhf"], io.StringIO())


def test_every_arch_of_the_configured_flavors_is_pinned():
    cfg = project_config()
    s = config.nss_wrapper_settings(cfg)
    images = config.image_settings(cfg.images)
    assert set(s.flavors) == {"minideb", "ubuntu"}
    for name in s.flavors:
        assert set(images.flavors[name].arches) <= set(s.pins), name
    assert s.pins["riscv64"].suite == "trixie" and s.pins["amd64"].suite == "bookworm"


def test_real_library_from_debians_archive():
    """bookworm's amd64 build through the real chain: an ELF shared object for the arch."""
    s = config.nss_wrapper_settings(project_config())   # the project's cache: other tests reuse what this fetches
    lib = nsswrapper.fetch(s, ["amd64"], io.StringIO())["amd64"]
    a = arches.get("amd64")
    assert lib.data[:4] == b"\x7fELF" and lib.data[16] == 3, "ET_DYN"
    assert int.from_bytes(lib.data[18:20], "little") == a.elf_machine
    assert lib.sha256 == hashlib.sha256(lib.data).hexdigest() and lib.version == s.pins["amd64"].version


NAME_THE_UID = ('cp /etc/passwd /tmp/p; echo "x4242:x:4242:0::/tmp:/bin/sh" >> /tmp/p; whoami; id -un; '
                'stat -c "%a %u:%g" ' + append.NSS_WRAPPER)


@pytest.mark.engine
@pytest.mark.parametrize("arch", ARCHES)
def test_the_library_in_the_minideb_image_names_an_arbitrary_uid(rig, arch):
    """What the entrypoint will do under `--user 4242:0`, by hand: preloaded, a passwd copy names the uid."""
    b = rig.built("minideb", arch)
    run = ["run", "--rm", "--network", "none", "--platform", str(b.target.platform), "--user", "4242:0",
           "--entrypoint", "sh"]
    env = ["-e", f"LD_PRELOAD={append.NSS_WRAPPER}", "-e", "NSS_WRAPPER_PASSWD=/tmp/p",
           "-e", "NSS_WRAPPER_GROUP=/etc/group"]
    out = rig.engine.run(*run, *env, b.image_id, "-c", NAME_THE_UID).stdout
    assert out.split("\n") == ["x4242", "x4242", "644 0:0", ""]
    without = rig.engine.run(*run, b.image_id, "-c", "whoami", check=False)
    assert without.returncode != 0 and "cannot find name for user ID 4242" in without.stderr
