"""gosu rebuilt from Debian's source with Debian's Go: the chain, the lock, and the real thing.

The chain and lock tests use a small archive the tests sign (tests/support/fakearchive.py).
The rest is real: Debian's own toolchain and dependency packages, taken
through the project's chain from Debian's mirror with Debian's keys, re-served
with gosu 1.19's orig tarball under a throwaway key (builder/gosu/testarchive.py:
unstable, the one suite that carries 1.19's source, had an expired Release
on the mirror when this was written), and real cross-compiles. One build
cache is shared by every test here, so each arch is compiled once per cache;
the reproducibility test compiles again on purpose, from nothing, elsewhere.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

from builder.core import arches
from builder import wiring
from builder.gosu import lock as lockfile, testarchive
from builder.gosu.fetch import FetchOptions, fetch
from builder.gosu.download import Cache
from builder.gosu.sources import deb, gomod, rebuild as rebuild_source, toolchain
from builder.gosu.signature import VerificationError, sha256_file

from tests.conftest import ROOT, cache_files, skip_or_fail
from tests.support.engine import project_config, rig  # noqa: F401 - the session fixture
from tests.support.fakearchive import FakeArchive, make_deb
from tests.support.httpmirror import Mirror

# The session's Debian toolchain archive and rebuild serve the engine test below too: made once, in the
# engine lane's worker (tests/conftest.py), not once in each.
pytestmark = pytest.mark.xdist_group("engine")

GOSU_119_ORIG = "cd9719b775dbfedae53923c9b0dc792b66d42c51e0b36652ed6f747fbadc0164"
TEST_ARCHES = "amd64,arm64,armhf,s390x"


# --- the chain, against a test-signed archive -------------------------------------------------------------

def _orig(version="9.9", files=None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (files or {"go.mod": b"module github.com/tianon/gosu\n", "main.go": b"package main\n"}).items():
            info = tarfile.TarInfo(f"gosu-{version}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="session")
def archive_key():
    from tests.support.gpgkit import GpgTestKey
    key = GpgTestKey.generate("Rebuild Archive Test <rebuild@test.invalid>")
    yield key
    key.close()


@pytest.fixture
def fake(tmp_path, archive_key):
    fake = FakeArchive(tmp_path / "archive", archive_key, arch_names=("amd64",))
    fake.sources = {"gosu": ("9.9-1", {"gosu_9.9.orig.tar.gz": _orig(), "gosu_9.9-1.debian.tar.xz": b"d"})}
    # A "toolchain" without a go binary: the chain accepts it, the toolchain check must not.
    fake.extra = {"amd64": [("golang-1.98-go", "1.98.1-1", "amd64", make_deb({"./usr/lib/go-1.98/VERSION": b"x"})),
                            ("golang-1.98-src", "1.98.1-1", "all", make_deb({"./usr/share/go-1.98/src/x": b"x"}))]}
    return fake


@pytest.fixture
def rebuild_options(tmp_path, archive_key):
    key_file = archive_key.export(tmp_path / "archive-key.asc")

    def make(source, arch_names="amd64", version="9.9", lock=None, **kw) -> FetchOptions:
        return FetchOptions(version, tuple(arches.parse_list(arch_names)), str(source), key_file, "",
                            tmp_path / "cache", lock, timeout=5, retries=2, backoff=0.01, kind="rebuild",
                            suite="testing", archive_keys=((key_file, archive_key.fingerprint),),
                            suites=("testing",), host_arch="amd64",
                            modules=(("github.com/moby/sys/user", "golang-github-moby-sys-dev"),), **kw)
    return make


def _flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _expire(fake):
    fake.date = dt.datetime(2019, 12, 25, tzinfo=dt.timezone.utc)
    fake.valid_until = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    fake.build()


CHAIN = {
    # case: (mutate, reason, fragment)
    "orig tarball altered": (lambda f: _flip(f.root / "pool/main/g/gosu/gosu_9.9.orig.tar.gz"),
                             "checksum mismatch", "but dists/testing/main/source/Sources.xz lists"),
    "Sources altered": (lambda f: _flip(f.root / "dists/testing/main/source/Sources.xz"),
                        "checksum mismatch", "but dists/testing/InRelease lists"),
    "source suite expired": (_expire, "expired Release", "or --accept-expired testing (gosu.debian.accept_expired) "
                             "to accept it (images built from it are trial images); or take gosu's source from"),
    "no such gosu version": (lambda f: None, "no source package", "has gosu 9.9-1, not gosu 9.8"),
    "toolchain without go": (lambda f: None, "not a Go toolchain", "has no usr/lib/go-1.98/bin/go"),
}


@pytest.mark.parametrize("case", list(CHAIN))
def test_chain_refuses(case, fake, rebuild_options):
    fake.build()
    mutate, reason, fragment = CHAIN[case]
    mutate(fake)
    with Mirror(fake.root) as m:
        opts = rebuild_options(m.url, version="9.8" if case == "no such gosu version" else "9.9")
        report = fetch(opts)
    assert not report.fetched
    [failure] = report.failures
    assert failure.reason == reason, str(failure)
    assert fragment in str(failure), str(failure)
    assert not [p for p in cache_files(opts.cache_dir) if "verified" in p.parts], "nothing is recorded as verified"


def test_index_helpers():
    from builder.gosu.sources import archive
    release = archive.Release("s", {"No-Support-for-Architecture-all": "Packages"}, {"x": ("0" * 64, 1)}, "F", "0")
    assert archive.arch_all_index(release, "arm64") == "main/binary-arm64/Packages"
    assert archive.arch_all_index(dataclasses.replace(release, fields={}), "arm64") == "main/binary-all/Packages"
    stanza = {"Package": "gosu", "Version": "1", "Directory": "pool/main/g/gosu",
              "Checksums-Sha256": f"\n{'a' * 64} 10 gosu_1.orig.tar.gz\n{'b' * 64} 5 gosu_1.dsc"}
    assert archive.source_file(stanza, r"gosu_1\.orig\.tar\.gz", "S") == ("pool/main/g/gosu/gosu_1.orig.tar.gz",
                                                                        "a" * 64, 10)
    with pytest.raises(VerificationError, match="not a path below pool/"):
        archive.source_file({**stanza, "Directory": "pool/../etc"}, r"gosu_1\.orig\.tar\.gz", "S")
    with pytest.raises(VerificationError, match="lists no file matching"):
        archive.source_file(stanza, r"gosu_2\.orig\.tar\.gz", "S")


def test_toolchain_choice():
    def st(name, version):
        return {"Package": name, "Version": version}
    offers = [("trixie", st("golang-1.24-go", "1.24.4-1")), ("bpo", st("golang-1.27-go", "1.27.3-1~bpo13+1")),
              ("bpo", st("golang-1.27-go", "1.27.4-1~bpo13+1")), ("bpo", st("golang-1.9-go", "1.9-1"))]
    assert toolchain.choose(offers)[1]["Version"] == "1.27.4-1~bpo13+1"      # newest minor (1.27 > 1.9), newest build
    assert toolchain.choose(offers, "1.24")[0] == "trixie"
    with pytest.raises(VerificationError, match="carry golang-1.9, golang-1.24, golang-1.27-go, not golang-1.30-go"):
        toolchain.choose(offers, "1.30")
    with pytest.raises(VerificationError, match="lock file pins 1.27.2-1"):
        toolchain.choose(offers, "", "1.27.2-1")
    with pytest.raises(VerificationError, match="not a Go minor version"):
        toolchain.choose(offers, "go1.27")


@pytest.mark.parametrize("package_version,module,want", [
    ("0.50.0+dfsg-1~bpo13+1", "golang.org/x/sys", "v0.50.0-debian.0.50.0-dfsg-1-bpo13-1"),
    ("0.0~git20241107.638aa7c-2", "github.com/moby/sys/user", "v0.0.0-debian.0.0-git20241107.638aa7c-2"),
    ("1:2.03-1", "example.org/m", "v0.0.0-debian.1-2.03-1"),
    ("3.1.0-2", "example.org/m/v3", "v3.1.0-debian.3.1.0-2"),
])
def test_dependency_versions_name_their_package(package_version, module, want):
    assert gomod.debian_version(package_version, module) == want
    assert gomod.release_version("1.19") == "v1.19.0"


def test_module_zip_is_the_same_bytes_every_time():
    files = {"b.go": b"package b\n", "go.mod": b"module example.org/m\n", "sub/go.mod": b"module x\n",
             "sub/x.go": b"x", "vendor/v.go": b"v"}
    picked = gomod.source_files(files)
    assert sorted(picked) == ["b.go", "go.mod"]   # nested modules and vendor/ are not part of a module
    mod = gomod.Module("example.org/M", "v1.0.0", picked)
    assert gomod.module_zip(mod) == gomod.module_zip(mod)
    assert zipfile.ZipFile(io.BytesIO(gomod.module_zip(mod))).namelist() == ["example.org/M@v1.0.0/b.go",
                                                                           "example.org/M@v1.0.0/go.mod"]
    assert gomod.escape("example.org/M") == "example.org/!m"


def test_unpack_refuses_links_out_of_the_tree(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("./usr/lib/evil")
        info.type, info.linkname = tarfile.SYMTYPE, "../../../etc"
        tar.addfile(info)
    from tests.support.fakearchive import deb_of
    package = deb_of(buf.getvalue(), gzip.compress, ".gz")
    with pytest.raises(deb.DebError, match="outside the package's tree"):
        deb.unpack(package, tmp_path)


def test_lock_section_round_trip_and_refusals(tmp_path):
    entry = lockfile.RebuildEntry("o" * 64, "golang-1.27-go", "1.27.4-1", {"golang-1.27-go": "g" * 64},
                                  {"golang-golang-x-sys-dev": "0.50.0-1"}, "a" * 64, 10)
    lock = lockfile.Lock("1.19", rebuild=lockfile.RebuildLock("unstable", "1.19", {"amd64": entry}))
    lockfile.save(tmp_path / "lock.json", lock)
    assert lockfile.load(tmp_path / "lock.json").rebuild == lock.rebuild
    with pytest.raises(VerificationError) as e:
        lock.rebuild.check_output("amd64", "b" * 64, 10)
    assert "a" * 64 in str(e.value) and "b" * 64 in str(e.value)
    with pytest.raises(VerificationError, match="Go toolchain: golang-1.27-go 1.27.5-1, but the lock file pins"):
        lock.rebuild.check_inputs("amd64", dataclasses.replace(entry, go_package_version="1.27.5-1"))
    with pytest.raises(VerificationError, match="no entry for s390x"):
        lock.rebuild.check_output("s390x", "a" * 64, 10)


# --- the real thing ---------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def archive():
    """Debian's real toolchain and dependency packages + gosu 1.19's orig tarball, under a test key."""
    cfg = project_config()
    opts = wiring.fetch_options(cfg.gosu, source="rebuild", arch="amd64")
    log = io.StringIO()
    try:
        made = testarchive.make(ROOT / ".cache" / "test-archive", opts, "1.19-1", GOSU_119_ORIG, log)
    except Exception as e:  # noqa: BLE001 - no network is a skip (or a CI failure), anything else a failure
        if "connection failed" in str(e):
            skip_or_fail(f"Debian's mirror {opts.mirror} cannot be reached: {e}")
        raise
    return made


def _options(archive, **kw) -> FetchOptions:
    cfg = project_config(archive.config)
    return wiring.fetch_options(cfg.gosu, source="rebuild", **kw)


@pytest.fixture(scope="session")
def rebuilt(archive):
    opts = _options(archive, arch=TEST_ARCHES)
    report = fetch(opts, log=io.StringIO())
    assert report.ok, [str(f) for f in report.failures]
    return opts, report


def test_rebuild_with_debians_go_every_arch_checked(rebuilt):
    opts, report = rebuilt
    assert [f.arch for f in report.fetched] == sorted(TEST_ARCHES.split(","))
    first = report.fetched[0]
    minor = first.detail("go_package").split("-")[1]
    assert first.detail("go_version").startswith(f"go{minor}.") and minor >= "1.27"
    goroot = next((opts.cache_dir / "toolchains").glob(f"*/usr/lib/go-{minor}"))
    for f in report.fetched:
        assert (f.kind, f.version, f.sha256) == ("rebuild", "1.19", sha256_file(f.path))
        assert not f.pinned and f.trust_root == archive_fpr(opts)   # a test key: trial
        if os.geteuid() == 0:
            assert "--version, nobody id, nobody ls -l /proc/self/fd" in f.detail("checks")
        info = subprocess.run([str(goroot / "bin" / "go"), "version", "-m", str(f.path)], capture_output=True,
                              text=True, check=True, env={"PATH": "/usr/bin:/bin", "GOENV": "off",
                                                          "HOME": str(opts.cache_dir)}).stdout
        assert "\tmod\tgithub.com/tianon/gosu\tv1.19.0\t" in info and "(devel)" not in info
        deps = {line.split("\t")[2]: line.split("\t")[3] for line in info.splitlines() if line.startswith("\tdep")}
        assert set(deps) == {"github.com/moby/sys/user", "golang.org/x/sys"}
        for module, package, version, module_version in ((d[2], d[0], d[1], d[3])
                                                         for d in json.loads(f.detail("deps"))):
            assert deps[module] == module_version == gomod.debian_version(version, module)
        assert "build\tCGO_ENABLED=0" in info and "build\t-trimpath=true" in info
    names = {c["name"]: c for c in rebuild_source.components(first, "amd64")}
    assert names["go"]["version"] == first.detail("go_version")
    assert names[first.detail("go_package")]["purl"].startswith(f"pkg:deb/debian/golang-{minor}-go@")
    assert names["golang.org/x/sys"]["from"].startswith("pkg:deb/debian/golang-golang-x-sys-dev@")
    assert "GOARM=6" in subprocess.run([str(goroot / "bin" / "go"), "version", "-m",
                                        str(next(f.path for f in report.fetched if f.arch == "armhf"))],
                                       capture_output=True, text=True, env={"GOENV": "off"}).stdout


def archive_fpr(opts: FetchOptions) -> str:
    return opts.archive_keys[0][1]


def test_warm_rebuild_compiles_nothing(rebuilt):
    opts, first = rebuilt
    go_build = opts.cache_dir / "go-build"
    before = sorted(p.name for p in go_build.rglob("*"))
    report = fetch(opts, log=io.StringIO())
    assert report.ok and all(f.from_cache for f in report.fetched)
    assert [f.sha256 for f in report.fetched] == [f.sha256 for f in first.fetched]
    assert sorted(p.name for p in go_build.rglob("*")) == before


def test_lock_pins_inputs_and_refuses_a_different_output(rebuilt):
    opts, first = rebuilt
    lock = lockfile.with_rebuild(lockfile.Lock("1.19"), opts.suite, first.fetched)
    entry = lock.rebuild.arches["amd64"]
    assert entry.orig_sha256 == GOSU_119_ORIG and entry.go_package == first.fetched[0].detail("go_package")
    assert set(entry.toolchain_debs) == {entry.go_package, entry.go_package.replace("-go", "-src")}
    assert set(entry.deps) == {"golang-github-moby-sys-dev", "golang-golang-x-sys-dev"}
    report = fetch(dataclasses.replace(opts, lock=lock), log=io.StringIO())
    assert report.ok and all(f.locked for f in report.fetched)
    wrong = "0" * 64
    bad = dataclasses.replace(lock, rebuild=dataclasses.replace(lock.rebuild, arches={
        **lock.rebuild.arches, "amd64": dataclasses.replace(entry, sha256=wrong)}))
    amd64 = dataclasses.replace(opts, lock=bad, arches=(arches.get("amd64"),))
    # From the cache, and built again (its output record gone, Go's build cache kept): refused both ways.
    record = Cache(opts.cache_dir).record_path(opts.archive_keys[0][1], f"rebuild-{opts.suite}-1.19-gonewest", "amd64")
    assert record.is_file()
    for _ in ("cached", "built"):
        report = fetch(amd64, log=io.StringIO())
        [failure] = report.failures
        assert failure.reason == "lock mismatch" and wrong in str(failure) and entry.sha256 in str(failure)
        assert not record.exists()   # the cached record was evicted; the refused build left none
    report = fetch(dataclasses.replace(amd64, lock=lock), log=io.StringIO())
    assert report.ok and report.fetched[0].locked and not report.fetched[0].from_cache


def test_reproducible_in_another_checkout_directory_umask_and_time_zone(rebuilt, archive, tmp_path):
    """A copy of the checkout, a fresh cache (so a fresh Go build cache: everything compiled again)."""
    opts, first = rebuilt
    checkout = tmp_path / "elsewhere" / "base-gosu"
    shutil.copytree(ROOT / "builder", checkout / "builder", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "keys", checkout / "keys")
    for name in ("tasks.py", "invoke.yaml", "gosu.lock.json"):
        shutil.copyfile(ROOT / name, checkout / name)
    arches_ = "amd64,s390x"
    env = {**os.environ, "TZ": "Pacific/Kiritimati", "LC_ALL": "C", "GOFLAGS": "-race", "GOAMD64": "v3"}
    proc = subprocess.run([sys.executable, "-m", "invoke", "-f", str(archive.config), "fetch", "--source", "rebuild",
                           "--arch", arches_, "--cache-dir", str(tmp_path / "other-cache")], cwd=checkout, env=env,
                          capture_output=True, text=True, preexec_fn=lambda: os.umask(0o077), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = {line.split()[0]: line.split()[1] for line in proc.stdout.splitlines() if line.split()}
    ours = {f.arch: f.sha256 for f in first.fetched if f.arch in arches_.split(",")}
    assert theirs == ours


def _expired_copy(archive, dest, date: dt.datetime, until: dt.datetime):
    """The test archive with its Release dated and expired, signed again by its key (pool/ shared)."""
    from builder.gosu.testmirror import gpg
    shutil.copytree(archive.root / "dists", dest / "dists")
    (dest / "pool").symlink_to(archive.root / "pool")
    release = dest / "dists" / archive.suite / "Release"
    release.write_text(f"Date: {date:%a, %d %b %Y %H:%M:%S} UTC\nValid-Until: {until:%a, %d %b %Y %H:%M:%S} UTC\n"
                       + release.read_text())
    (release.parent / "InRelease").unlink()
    gpg(archive.root / "gnupg", "--local-user", archive.fingerprint, "--output", str(release.parent / "InRelease"),
        "--clearsign", str(release))
    return dest


def test_expired_source_suite_is_built_only_on_request_and_marked(rebuilt, archive, tmp_path):
    """The same inputs through an expired Release: refused; built with --accept-expired (same bytes, marked, a trial);
    then neither the cache nor a lock serves it to a run without the opt-in."""
    opts, first = rebuilt
    now = dt.datetime.now(dt.timezone.utc)
    mirror = _expired_copy(archive, tmp_path / "stale", now - dt.timedelta(days=30), now - dt.timedelta(days=21))
    cache = tmp_path / "cache"
    cache.mkdir()
    for shared in ("go-build", "toolchains"):   # content-addressed: sharing them only saves compiling again
        (cache / shared).symlink_to(opts.cache_dir / shared)
    plain = dataclasses.replace(opts, mirror=str(mirror), cache_dir=cache, arches=(arches.get("amd64"),), lock=None)
    accepted = dataclasses.replace(plain, accept_expired=(archive.suite,))
    [failure] = fetch(plain, log=io.StringIO()).failures
    assert failure.reason == "expired Release" and "(21 days ago)" in str(failure), str(failure)
    assert f"--accept-expired {archive.suite}" in str(failure)
    report = fetch(accepted, log=io.StringIO())
    assert report.ok, [str(f) for f in report.failures]
    [f] = report.fetched
    marker = f"{archive.suite} {now - dt.timedelta(days=21):%Y-%m-%d}"
    assert f.detail("expired_accepted") == marker and not f.from_cache
    assert f.sha256 == next(x.sha256 for x in first.fetched if x.arch == "amd64")   # same inputs, same bytes
    from builder.image import model, plan
    gosu = plan.gosu_of(f, f.path.read_bytes())
    assert f"(expired_accepted: {marker})" in plan.trial_reasons(model.Base("a", "a", "", ""), gosu)
    record = Cache(cache).record_path(archive.fingerprint, f"rebuild-{archive.suite}-1.19-gonewest", "amd64")
    [failure] = fetch(plain, log=io.StringIO()).failures
    assert failure.reason == "expired Release" and record.is_file()   # not served, not evicted
    again = fetch(accepted, log=io.StringIO())
    assert again.fetched[0].from_cache and again.fetched[0].detail("expired_accepted") == marker
    lock = lockfile.with_rebuild(lockfile.Lock("1.19"), archive.suite, report.fetched)
    assert lock.rebuild.expired_accepted == marker
    [failure] = fetch(dataclasses.replace(plain, lock=lock), log=io.StringIO()).failures
    assert failure.reason == "expired Release"
    assert fetch(dataclasses.replace(accepted, lock=lock), log=io.StringIO()).fetched[0].locked


def test_debians_own_source_suite_is_checked_not_trusted(rebuilt):
    """The default (unstable's 1.19 source, Debian's keys): built when its Release is valid; if it has expired,
    refused, and built only with --accept-expired: marked, trusted through Debian's key, and the same bytes as the
    test archive's rebuild of the same tarball with the same toolchain."""
    cfg = project_config()
    opts = dataclasses.replace(wiring.fetch_options(cfg.gosu, source="rebuild", arch="amd64"), lock=None)
    report = fetch(opts, log=io.StringIO())
    if any(f.reason == "connection failed" for f in report.failures):
        skip_or_fail(f"Debian's mirror cannot be reached: {report.failures[0]}")
    if report.ok:
        assert report.fetched[0].pinned and not report.fetched[0].detail("expired_accepted")
        return
    [failure] = report.failures
    assert failure.reason == "expired Release" and f"dists/{opts.suite}/InRelease" in str(failure), str(failure)
    assert f"--accept-expired {opts.suite}" in str(failure)
    report = fetch(dataclasses.replace(opts, accept_expired=(opts.suite,)), log=io.StringIO())
    assert report.ok, [str(f) for f in report.failures]
    [f] = report.fetched
    assert f.pinned and f.trust_root in {p.stem for p in (ROOT / "keys" / "debian-archive").glob("*.asc")}
    assert f.detail("expired_accepted").startswith(f"{opts.suite} ") and f.detail("orig_sha256") == GOSU_119_ORIG
    assert f.sha256 == next(x.sha256 for x in rebuilt[1].fetched if x.arch == "amd64")


@pytest.mark.engine
def test_images_with_rebuilt_gosu_pass_the_smoke_suite(rig, archive):
    from builder import pipeline
    cfg = project_config(archive.config)
    req = wiring.build_request(wiring.settings(cfg), flavor="alpine", arch="amd64", source="rebuild")
    req = dataclasses.replace(req, settings=dataclasses.replace(req.settings,
                                                                repository=req.settings.repository + "-rebuild"))
    [built] = pipeline.smoke(req, rig.engine, pipeline.build(req, rig.engine, io.StringIO()), io.StringIO())
    labels = built.labels
    assert labels["org.base-gosu.gosu.source"] == "rebuild"
    assert labels["org.base-gosu.gosu.rebuild.go-version"].startswith("go1.")
    assert labels["org.base-gosu.gosu.rebuild.toolchain"].startswith("golang-1.")
    assert "golang-golang-x-sys-dev" in labels["org.base-gosu.gosu.rebuild.dependencies"]
    assert "is not pinned in keys/" in built.trial
