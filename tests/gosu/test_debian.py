"""gosu from Debian's archive: the chain InRelease -> Packages -> .deb -> binary, over real HTTP and gpg.

A small archive made and signed by the tests plays Debian's; one test runs
the real chain against Debian's own mirror, which these machines reach as
apt does.
"""

import dataclasses
import datetime as dt
import gzip
import hashlib
import json
import lzma

import pytest

from builder import wiring
from builder.core import arches
from builder.gosu import lock as lockfile
from builder.gosu.fetch import FetchOptions, fetch
from builder.gosu.sources import archive, deb
from builder.gosu.signature import VerificationError, sha256_file

from tests.conftest import ROOT, cache_files, skip_or_fail
from tests.support.fakearchive import FakeArchive, make_deb
from tests.support.fakerelease import fake_elf
from tests.support.gpgkit import GpgTestKey, clearsign
from tests.support.httpmirror import Mirror

DEBIAN_KEYS = ROOT / "keys" / "debian-archive"
DEBIAN_FPRS = sorted(p.stem for p in DEBIAN_KEYS.glob("*.asc"))


@pytest.fixture(scope="session")
def archive_key():
    key = GpgTestKey.generate("Archive Test <archive@test.invalid>")
    yield key
    key.close()


@pytest.fixture
def fake(tmp_path, archive_key):
    return FakeArchive(tmp_path / "archive", archive_key)


@pytest.fixture
def debian_options(tmp_path, archive_key):
    key_file = archive_key.export(tmp_path / "archive-key.asc")

    def make(source, arch_names="amd64", version="9.9", keys=None, lock=None, cache_dir=None, **kw) -> FetchOptions:
        return FetchOptions(version, tuple(arches.parse_list(arch_names)), str(source), key_file, "",
                            cache_dir or tmp_path / "cache", lock, timeout=5, retries=2, backoff=0.01, kind="debian",
                            suite="testing", archive_keys=keys or ((key_file, archive_key.fingerprint),), **kw)
    return make


def test_fake_archive_over_http_and_from_a_directory(fake, debian_options):
    fake.build()
    with Mirror(fake.root) as m:
        report = fetch(debian_options(m.url, "amd64,arm64,armhf,s390x"))
        assert report.ok, report.failures
        assert sorted(p for p in m.requests if p.endswith((".xz", ".gz", "Packages"))) == \
            [f"/dists/testing/main/binary-{a}/Packages.xz" for a in ("amd64", "arm64", "armhf", "s390x")]
    for f in report.fetched:
        assert f.sha256 == hashlib.sha256(fake.binaries[f.arch]).hexdigest() == sha256_file(f.path)
        assert (f.kind, f.version, f.detail("suite"), f.detail("package")) == ("debian", "9.9", "testing", "9.9-1+b1")
        assert f.detail("built_using") == "golang-1.99 (= 1.99.1-1)" and not f.pinned
    local = fetch(debian_options(fake.root, "amd64", cache_dir=fake.root.parent / "c2"))
    assert local.ok and local.fetched[0].sha256 == report.fetched[0].sha256


def test_warm_run_makes_no_request_and_rechecks_the_chain(fake, debian_options):
    fake.build()
    with Mirror(fake.root) as m:
        assert fetch(debian_options(m.url, "amd64,arm64")).ok
        m.requests.clear()
        report = fetch(debian_options(m.url, "amd64,arm64"))
        assert report.ok and all(f.from_cache for f in report.fetched) and m.requests == []
        # The cached binary and its record rewritten together: the .deb it came from disagrees.
        opts = debian_options(m.url, "amd64")
        evil = fake_elf(arches.get("amd64"), b"evil")
        from builder.gosu.download import Cache
        from builder.gosu.sources.debian import DebRecord
        cache = Cache(opts.cache_dir)
        rec_path = cache.record_path(opts.archive_keys[0][1], "debian-testing-9.9", "amd64")
        rec = json.loads(rec_path.read_text())
        digest = hashlib.sha256(evil).hexdigest()
        cache.blob(digest).write_bytes(evil)
        rec_path.write_text(json.dumps({**rec, "sha256": digest}))
        assert DebRecord(**json.loads(rec_path.read_text())).sha256 == digest
        report = fetch(opts)
    assert any("not the one in the package" in w for w in report.warnings)
    assert report.ok and report.fetched[0].sha256 == hashlib.sha256(fake.binaries["amd64"]).hexdigest()


def test_gz_only_and_uncompressed_only_mirrors(fake, debian_options):
    fake.build()
    index = fake.root / "dists/testing/main/binary-amd64/Packages"
    index.with_suffix(".xz").unlink()
    assert fetch(debian_options(fake.root, cache_dir=fake.root.parent / "a")).ok
    index.with_suffix(".gz").unlink()
    assert fetch(debian_options(fake.root, cache_dir=fake.root.parent / "b")).ok


def _flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _resign(fake, mutate):
    """Edit the Release's listed files, then sign it again (a consistent but altered archive)."""
    mutate()
    listed = {}
    dists = fake.root / "dists" / fake.suite
    for p in dists.rglob("Packages*"):
        listed[str(p.relative_to(dists))] = p.read_bytes()
    fake.write_release(listed)


def _edit_inrelease(fake, **_):
    p = fake.root / "dists/testing/InRelease"
    p.write_text(p.read_text().replace("Suite: testing", "Suite: testinG"))


def _other_key_only(fake, attacker_key, **_):
    dists = fake.root / "dists/testing"
    clearsign(attacker_key, dists / "Release", dists / "InRelease")


def _expired(fake, **_):
    fake.date = dt.datetime(2019, 12, 25, tzinfo=dt.timezone.utc)
    fake.valid_until = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    _resign(fake, lambda: None)


def _no_package(fake, **_):
    def drop():
        for p in (fake.root / "dists/testing/main/binary-amd64").glob("Packages*"):
            p.unlink()
        plain = b"Package: other\nVersion: 1\nArchitecture: amd64\n"
        (fake.root / "dists/testing/main/binary-amd64/Packages.xz").write_bytes(lzma.compress(plain))
    _resign(fake, drop)


def _rebuild_with(fake, deb_bytes):
    fake.debs["amd64"] = deb_bytes
    fake.build()


TAMPER = {
    # case: (mutate, reason, fragment)
    ".deb altered": (lambda fake, **_: _flip(fake.root / "pool/main/g/gosu/gosu_9.9-1+b1_amd64.deb"),
                     "checksum mismatch", "but dists/testing/main/binary-amd64/Packages.xz lists"),
    "Packages altered": (lambda fake, **_: _flip(fake.root / "dists/testing/main/binary-amd64/Packages.xz"),
                         "checksum mismatch", "but dists/testing/InRelease lists"),
    "InRelease edited after signing": (_edit_inrelease, "bad signature", "changed after it was signed"),
    "InRelease signed by another key only": (_other_key_only, "wrong key", "carries no good signature by a pinned key"),
    "Valid-Until in the past": (_expired, "expired Release",
                                "testing's InRelease expired on 2020-01-01 00:00 UTC ("),
    "no package for the arch": (_no_package, "no package", "has no gosu package"),
    ".deb without /usr/sbin/gosu": (lambda fake, **_: _rebuild_with(fake, make_deb({"./usr/bin/other": b"x"})),
                                    "not a gosu package", "has no /usr/sbin/gosu"),
    "wrong-ELF binary": (lambda fake, **_: _rebuild_with(fake, make_deb({"./usr/sbin/gosu": fake_elf(arches.get("s390x"))})),
                         "wrong ELF arch", "filed under amd64"),
    "InRelease missing (HTTP 404)": (lambda fake, **_: (fake.root / "dists/testing/InRelease").unlink(),
                                     "HTTP 404", "dists/testing/InRelease"),
}


@pytest.mark.parametrize("case", list(TAMPER))
def test_tamper_matrix(case, fake, debian_options, attacker_key):
    fake.build()
    mutate, reason, fragment = TAMPER[case]
    mutate(fake, attacker_key=attacker_key)
    with Mirror(fake.root) as m:
        opts = debian_options(m.url)
        report = fetch(opts)
    assert not report.fetched
    [failure] = report.failures
    assert failure.reason == reason, str(failure)
    assert fragment in str(failure), str(failure)
    assert cache_files(opts.cache_dir) == []


EXPIRED = {
    # With --accept-expired testing, an expired Release is taken; nothing else is relaxed.
    "accepted and marked": (None, None, None),
    "another suite accepted": (lambda fake, **_: None, "expired Release", "or --accept-expired testing (gosu.debian"),
    "InRelease signed by another key only": (_other_key_only, "wrong key", "no good signature by a pinned key"),
    "InRelease edited after signing": (_edit_inrelease, "bad signature", "changed after it was signed"),
    ".deb altered": (lambda fake, **_: _flip(fake.root / "pool/main/g/gosu/gosu_9.9-1+b1_amd64.deb"),
                     "checksum mismatch", "but dists/testing/main/binary-amd64/Packages.xz lists"),
    "Date in the future": (lambda fake, **_: _dated(fake, dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc)),
                           "Release not valid yet", "is dated 2099-01-01"),
    "Valid-Until before Date": (lambda fake, **_: _dated(fake, dt.datetime(2020, 6, 1, tzinfo=dt.timezone.utc)),
                                "malformed Release", "is not after its Date"),
}


def _dated(fake, date):
    fake.date = date
    _resign(fake, lambda: None)


@pytest.mark.parametrize("case", list(EXPIRED))
def test_expired_release_is_taken_only_for_the_named_suite(case, fake, debian_options, attacker_key):
    fake.build()
    _expired(fake)
    mutate, reason, fragment = EXPIRED[case]
    if mutate:
        mutate(fake, attacker_key=attacker_key)
    opts = debian_options(fake.root, accept_expired=("unstable",) if case == "another suite accepted" else
                          ("testing",))
    report = fetch(opts)
    if reason is None:
        assert report.ok, report.failures
        [f] = report.fetched
        assert f.detail("expired_accepted") == "testing 2020-01-01" and f.trust_root == fake.key.fingerprint
        return
    [failure] = report.failures
    assert failure.reason == reason and fragment in str(failure), str(failure)
    assert cache_files(opts.cache_dir) == []


def test_expired_refusal_names_the_opt_in_and_a_fresh_release_needs_none(fake, debian_options):
    fake.build()
    assert not fetch(debian_options(fake.root)).fetched[0].detail("expired_accepted")   # fresh: no mark
    _expired(fake)
    [failure] = fetch(debian_options(fake.root, cache_dir=fake.root.parent / "c2")).failures
    assert "use a current mirror, or --accept-expired testing (gosu.debian.accept_expired) to accept it (images " \
           "built from it are trial images)" in str(failure)


def test_cache_and_lock_never_launder_an_accepted_expired_release(fake, debian_options):
    """Fetched under --accept-expired: not served from the cache, nor let through by a lock, to a run without it."""
    fake.build()
    _expired(fake)
    accepted = debian_options(fake.root, "amd64,arm64", accept_expired=("testing",))
    first = fetch(accepted)
    assert first.ok and all(f.detail("expired_accepted") == "testing 2020-01-01" for f in first.fetched)
    records = [p for p in cache_files(accepted.cache_dir) if "verified" in p.parts]
    assert len(records) == 2
    plain = debian_options(fake.root, "amd64,arm64")
    refused = fetch(plain)
    assert not refused.fetched and {f.reason for f in refused.failures} == {"expired Release"}
    assert [p for p in cache_files(plain.cache_dir) if "verified" in p.parts] == records   # kept, not served
    again = fetch(accepted)
    assert all(f.from_cache and f.detail("expired_accepted") for f in again.fetched)
    lock = lockfile.with_debian(lockfile.Lock("1.19"), "testing", first.fetched)
    assert lock.debian.expired_accepted == "testing 2020-01-01"
    path = fake.root.parent / "lock.json"
    lockfile.save(path, lock)
    assert lockfile.load(path).debian == lock.debian and '"expired_accepted": "testing 2020-01-01"' in path.read_text()
    locked = fetch(dataclasses.replace(plain, lock=lock))
    assert not locked.fetched and {f.reason for f in locked.failures} == {"expired Release"}
    assert all(f.locked for f in fetch(dataclasses.replace(accepted, lock=lock)).fetched)


def test_an_image_from_an_accepted_expired_release_is_a_trial_image(fake, debian_options):
    """Its trial label names the expired suite; its trust root is still the archive key."""
    from builder.image import model, plan
    fake.build()
    _expired(fake)
    [f] = fetch(debian_options(fake.root, accept_expired=("testing",))).fetched
    f = dataclasses.replace(f, pinned=True)   # as if signed by Debian's own key: the expiry alone makes it trial
    base = model.Base("alpine:3.20", "alpine", "sha256:" + "1" * 64, "sha256:" + "2" * 64)
    assert plan.trial_reasons(base, plan.gosu_of(f, f.path.read_bytes())) == ("gosu came from an expired Debian archive Release, accepted with "
                                             "--accept-expired (expired_accepted: testing 2020-01-01)")
    fresh = dataclasses.replace(f, details=tuple(d for d in f.details if d[0] != "expired_accepted"))
    assert plan.trial_reasons(base, plan.gosu_of(fresh, fresh.path.read_bytes())) == ""


def test_tamper_http_500_is_retried_then_named(fake, debian_options):
    fake.build()
    with Mirror(fake.root) as m:
        m.faults["/dists/testing/InRelease"] = [500, 500, 500, 500]
        opts = debian_options(m.url)
        [failure] = fetch(opts).failures
        assert failure.reason == "HTTP 500" and m.requests.count("/dists/testing/InRelease") == 3
        m.faults["/dists/testing/main/binary-amd64/Packages.xz"] = [503]
        report = fetch(opts)
    assert report.ok, report.failures
    assert cache_files(opts.cache_dir) != []


def test_test_archive_is_refused_by_debians_real_keys(fake, debian_options):
    fake.build()
    keys = tuple((DEBIAN_KEYS / f"{f}.asc", f) for f in DEBIAN_FPRS)
    opts = debian_options(fake.root, keys=keys)
    [failure] = fetch(opts).failures
    assert failure.reason == "wrong key" and DEBIAN_FPRS[0] in str(failure)
    assert cache_files(opts.cache_dir) == []


def test_other_signatures_neither_help_nor_hurt(fake, debian_options, attacker_key, archive_key, tmp_path):
    """InRelease signed by an unknown key and the pinned one (as Debian signs with several keys)."""
    fake.build()
    dists = fake.root / "dists/testing"
    from tests.support.gpgkit import _gpg
    secret = tmp_path / "attacker-secret.gpg"
    _gpg(attacker_key.home, "--output", str(secret), "--export-secret-keys", attacker_key.fingerprint)
    _gpg(archive_key.home, "--import", str(secret))
    _gpg(archive_key.home, "--local-user", attacker_key.fingerprint + "!", "--local-user",
         archive_key.fingerprint + "!", "--output", str(dists / "InRelease"), "--clearsign", str(dists / "Release"))
    report = fetch(debian_options(fake.root))
    assert report.ok, report.failures
    assert report.fetched[0].trust_root == archive_key.fingerprint


def test_lock_pins_package_deb_and_binary(fake, debian_options):
    fake.build()
    first = fetch(debian_options(fake.root, "amd64,arm64"))
    lock = lockfile.with_debian(lockfile.Lock("1.19"), "testing", first.fetched)
    assert lock.debian.arches["amd64"].package_version == "9.9-1+b1"
    assert fetch(debian_options(fake.root, "amd64,arm64", lock=lock)).fetched[0].locked
    # The archive moves on (a binNMU): a correctly signed new package is refused while the lock pins the old one.
    fake.version = "9.9-1+b2"
    fake.binaries, fake.debs = {}, {}
    fake.build()
    opts = debian_options(fake.root, "amd64", lock=lock, cache_dir=fake.root.parent / "fresh")
    [failure] = fetch(opts).failures
    assert failure.reason == "lock mismatch" and "pins 9.9-1+b1" in str(failure)
    assert cache_files(opts.cache_dir) == []


def test_deb_members_in_every_compression():
    import bz2
    binary = fake_elf(arches.get("amd64"))
    for compress, suffix in ((lzma.compress, ".xz"), (gzip.compress, ".gz"), (bz2.compress, ".bz2"),
                             (lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE), ".lzma"), (bytes, "")):
        assert deb.extract(make_deb({"./usr/sbin/gosu": binary}, compress, suffix), "/usr/sbin/gosu") == binary
    with pytest.raises(deb.DebError, match="zstd"):
        deb.extract(make_deb({"./usr/sbin/gosu": binary}, bytes, ".zst"), "/usr/sbin/gosu")
    with pytest.raises(deb.DebError, match="not a Debian package"):
        deb.extract(b"PK\x03\x04", "/usr/sbin/gosu")


def test_deb_container_refusals():
    from tests.support.fakearchive import ar
    package = make_deb({"./usr/sbin/gosu": fake_elf(arches.get("amd64"))})
    with pytest.raises(deb.DebError, match="data.tar.xz is truncated"):
        deb.extract(package[:-100], "/usr/sbin/gosu")
    with pytest.raises(deb.DebError, match="not a Debian package .*control.tar"):
        deb.extract(ar([("debian-binary", b"2.0\n"), ("data.tar", b"")]), "/usr/sbin/gosu")
    with pytest.raises(deb.DebError, match="not a format 2.0"):
        deb.extract(package.replace(b"2.0\n", b"3.0\n", 1), "/usr/sbin/gosu")


def test_index_stanza_without_a_debian_version_is_refused():
    index = b"Package: gosu\nVersion: 1.17-3\nArchitecture: amd64\n\nPackage: gosu\nArchitecture: amd64\n"
    with pytest.raises(VerificationError, match="not a Debian version"):
        archive.packages_named(index, "gosu", "amd64")
    assert [s["Version"] for s in archive.packages_named(index, "gosu", "arm64")] == []


@pytest.mark.parametrize("a,b,want", [("1.17-3+b4", "1.17-3+b10", -1), ("1.17-3", "1.17-3+b1", -1),
                                      ("1:1.0", "2.0", 1), ("1.0~rc1", "1.0", -1), ("1.17", "1.17", 0),
                                      ("1.10-1", "1.9-1", 1)])
def test_debian_version_order(a, b, want):
    assert archive.compare_versions(a, b) == want
    assert archive.upstream_version("1:1.17-3+b4") == "1.17"


def test_real_debian_archive_chain_for_all_eight_arches(tmp_path):
    """The real chain against Debian's mirror and keys, checked against the repository's lock."""
    from invoke import Config
    cfg = Config(project_location=str(ROOT))
    cfg.load_project()
    opts = wiring.fetch_options(cfg.gosu, source="debian", arch=cfg.gosu.debian.arches, cache_dir=str(tmp_path / "c"))
    report = fetch(opts)
    if any(f.reason == "connection failed" for f in report.failures):
        skip_or_fail(f"Debian's mirror {opts.mirror} cannot be reached: {report.failures[0]}")
    assert report.ok, [str(f) for f in report.failures]
    assert len(report.fetched) == 8 and all(f.locked and f.pinned for f in report.fetched)
    assert {f.trust_root for f in report.fetched} <= set(DEBIAN_FPRS)
