"""The fetch stage end to end over real HTTP on 127.0.0.1, with real gpg signatures."""

import hashlib
import shutil
import threading

import pytest

from builder.core import arches
from builder.gosu.fetch import fetch
from builder.gosu.signature import sha256_file

from tests.conftest import cache_files, lock_for
from tests.support.fakerelease import fake_elf
from tests.support.gpgkit import GpgTestKey


def test_all_nine_arches_over_http_verified_and_cached(mirror, options, release):
    _, digests, _ = release
    report = fetch(options(mirror=mirror.url, lock=lock_for(digests)))
    assert report.ok, report.failures
    assert {f.arch for f in report.fetched} == set(arches.NAMES)
    for f in report.fetched:
        assert f.sha256 == digests[f.arch] == sha256_file(f.path)
        assert f.sums_checked and f.locked and not f.from_cache
    assert len(mirror.binary_requests()) == 18  # nine binaries, nine signatures


def test_warm_run_makes_no_http_request_for_binaries(mirror, options):
    assert fetch(options(mirror=mirror.url)).ok
    mirror.requests.clear()
    report = fetch(options(mirror=mirror.url))
    assert report.ok and all(f.from_cache for f in report.fetched)
    assert mirror.requests == []


def test_binary_signature_and_armored_signature_both_work(tmp_path, release_key, options):
    from tests.support.fakerelease import make_release
    root = tmp_path / "binsig"
    make_release(root, "9.9", release_key, armor=False, arch_list=[arches.get("amd64")])
    assert b"BEGIN PGP" not in (root / "9.9" / "gosu-amd64.asc").read_bytes()
    report = fetch(options(mirror=str(root), arch_names="amd64", cache_dir=tmp_path / "c2"))
    assert report.ok, report.failures


def test_release_without_sha256sums_is_accepted_on_signature(release, options):
    root = release[0]
    (root / "9.9" / "SHA256SUMS").unlink()
    (root / "9.9" / "SHA256SUMS.asc").unlink()
    report = fetch(options(arch_names="amd64,s390x"))
    assert report.ok and not any(f.sums_checked for f in report.fetched)


def test_signature_by_signing_subkey_of_pinned_key_is_accepted(tmp_path):
    key = GpgTestKey.generate("Subkey Signer <sub@test.invalid>")
    try:
        sub = key.add_signing_subkey()
        from tests.support.fakerelease import make_release
        root = tmp_path / "m"
        d = root / "9.9"
        d.mkdir(parents=True)
        (d / "gosu-amd64").write_bytes(fake_elf(arches.get("amd64")))
        key.sign(d / "gosu-amd64", signer=sub)
        from builder.gosu.fetch import FetchOptions
        opts = FetchOptions("9.9", (arches.get("amd64"),), str(root), key.export(tmp_path / "k.asc"),
                            key.fingerprint, tmp_path / "cache", None)
        report = fetch(opts)
        assert report.ok, report.failures
    finally:
        key.close()


def test_cached_file_modified_on_disk_is_detected_evicted_and_refetched(mirror, options, release):
    _, digests, _ = release
    first = fetch(options(mirror=mirror.url, arch_names="arm64"))
    path = first.fetched[0].path
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    mirror.requests.clear()
    report = fetch(options(mirror=mirror.url, arch_names="arm64"))
    assert report.ok
    assert any("modified on disk after it was verified" in w for w in report.warnings)
    assert sha256_file(report.fetched[0].path) == digests["arm64"]
    assert "/9.9/gosu-arm64" in mirror.requests  # fetched again, not trusted


def test_two_concurrent_runs_share_the_cache_safely(mirror, options, release):
    _, digests, _ = release
    reports = [None, None]

    def run(i):
        reports[i] = fetch(options(mirror=mirror.url))
    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.ok for r in reports), [r.failures for r in reports]
    for r in reports:
        for f in r.fetched:
            assert sha256_file(f.path) == digests[f.arch]
    assert not any((options().cache_dir / "tmp").iterdir())


def test_http_500_then_success_is_retried(mirror, options):
    mirror.faults["/9.9/gosu-amd64"] = [500, 503]
    report = fetch(options(mirror=mirror.url, arch_names="amd64"))
    assert report.ok, report.failures
    assert mirror.requests.count("/9.9/gosu-amd64") == 3


def test_http_404_is_not_retried(mirror, options, release):
    (release[0] / "9.9" / "gosu-riscv64").unlink()
    report = fetch(options(mirror=mirror.url, arch_names="riscv64"))
    assert [f.reason for f in report.failures] == ["HTTP 404"]
    assert mirror.requests.count("/9.9/gosu-riscv64") == 1


# --- the tamper matrix: each case rejected with its own message, nothing cached ---

def _flip_byte(root, **_):
    f = root / "9.9" / "gosu-amd64"
    data = bytearray(f.read_bytes())
    data[200] ^= 0x01
    f.write_bytes(bytes(data))


def _truncate(root, **_):
    f = root / "9.9" / "gosu-amd64"
    f.write_bytes(f.read_bytes()[:1000])


def _drop_signature(root, **_):
    (root / "9.9" / "gosu-amd64.asc").unlink()


def _other_key_signature(root, attacker_key, **_):
    attacker_key.sign(root / "9.9" / "gosu-amd64")


def _two_signatures(root, release_key, attacker_key, **_):
    f = root / "9.9" / "gosu-amd64"
    a = release_key.sign(f, armor=False, out=root / "a.sig")
    b = attacker_key.sign(f, armor=False, out=root / "b.sig")
    (root / "9.9" / "gosu-amd64.asc").write_bytes(a.read_bytes() + b.read_bytes())


def _sums_mismatch(root, release_key, **_):
    s = root / "9.9" / "SHA256SUMS"
    lines = [("0" * 64 + "  gosu-amd64") if l.endswith("gosu-amd64") else l for l in s.read_text().splitlines()]
    s.write_text("\n".join(lines) + "\n")
    release_key.sign(s)


def _sums_bad_signature(root, attacker_key, **_):
    attacker_key.sign(root / "9.9" / "SHA256SUMS")


def _wrong_elf_signed(root, release_key, **_):
    f = root / "9.9" / "gosu-amd64"
    f.write_bytes(fake_elf(arches.get("arm64")))
    release_key.sign(f)
    s = root / "9.9" / "SHA256SUMS"
    digest = hashlib.sha256(f.read_bytes()).hexdigest()
    s.write_text("".join((f"{digest}  gosu-amd64" if l.endswith("gosu-amd64") else l) + "\n"
                         for l in s.read_text().splitlines()))
    release_key.sign(s)


TAMPER = {
    "flipped byte": (_flip_byte, "bad signature", "was altered or truncated"),
    "truncated binary": (_truncate, "bad signature", "was altered or truncated"),
    "signature missing": (_drop_signature, "missing signature", "unsigned binary is never used"),
    "signature from another key": (_other_key_signature, "wrong key", "not by the pinned key"),
    "two signatures in one .asc": (_two_signatures, "multiple signatures", "holds 2 signatures"),
    "SHA256SUMS mismatch": (_sums_mismatch, "checksum mismatch", "the signed SHA256SUMS says"),
    "SHA256SUMS signed by another key": (_sums_bad_signature, "wrong key", "SHA256SUMS.asc was made by"),
    "wrong-ELF binary correctly signed": (_wrong_elf_signed, "wrong ELF arch", "AArch64 64-bit LE executable but is filed under amd64"),
}


@pytest.mark.parametrize("case", list(TAMPER))
def test_tamper_matrix(case, mirror, options, release, release_key, attacker_key):
    mutate, reason, fragment = TAMPER[case]
    mutate(release[0], release_key=release_key, attacker_key=attacker_key)
    opts = options(mirror=mirror.url, arch_names="amd64")
    report = fetch(opts)
    assert not report.fetched
    [failure] = report.failures
    assert failure.reason == reason, str(failure)
    assert fragment in str(failure)
    assert cache_files(opts.cache_dir) == []


def test_tamper_lock_mismatch(mirror, options, release):
    _, digests, _ = release
    lock = lock_for({**digests, "amd64": "1" * 64})
    opts = options(mirror=mirror.url, arch_names="amd64,arm64", lock=lock)
    report = fetch(opts)
    assert [f.arch for f in report.fetched] == ["arm64"]
    [failure] = report.failures
    assert failure.reason == "lock mismatch" and "rejected" in str(failure)
    assert not any(digests["amd64"] in str(p) for p in cache_files(opts.cache_dir))


def test_tamper_pinned_key_plus_attacker_key_in_key_file(tmp_path, mirror, options, release_key, attacker_key,
                                                          release):
    attacker_key.sign(release[0] / "9.9" / "gosu-amd64")
    both = tmp_path / "both.asc"
    both.write_bytes(release_key.export(tmp_path / "r.asc").read_bytes()
                     + attacker_key.export(tmp_path / "a.asc").read_bytes())
    opts = options(mirror=mirror.url, arch_names="amd64", key_file=both)
    [failure] = fetch(opts).failures
    assert failure.reason == "pinned key" and "must hold exactly the pinned key" in str(failure)
    assert attacker_key.fingerprint in str(failure)
    assert cache_files(opts.cache_dir) == []


def test_tamper_expired_pinned_key(tmp_path, mirror):
    # Made and used in 2020 with a one-day lifetime: expired for years now.
    key = GpgTestKey.generate("Old <old@test.invalid>", expire="1d", faked_time="20200101T000000!")
    try:
        from tests.support.fakerelease import make_release
        from builder.gosu.fetch import FetchOptions
        root = tmp_path / "old"
        d = root / "9.9"
        d.mkdir(parents=True)
        (d / "gosu-amd64").write_bytes(fake_elf(arches.get("amd64")))
        key.sign(d / "gosu-amd64", faked_time="20200101T120000!")
        opts = FetchOptions("9.9", (arches.get("amd64"),), str(root), key.export(tmp_path / "old.asc"),
                            key.fingerprint, tmp_path / "cache", None)
        [failure] = fetch(opts).failures
        assert failure.reason == "expired key"
        assert "has expired" in str(failure) and "replace that file" in str(failure)
        assert cache_files(opts.cache_dir) == []
    finally:
        key.close()


def test_tamper_http_404(mirror, options, release):
    (release[0] / "9.9" / "gosu-amd64").unlink()
    opts = options(mirror=mirror.url, arch_names="amd64")
    [failure] = fetch(opts).failures
    assert failure.reason == "HTTP 404" and "/9.9/gosu-amd64" in str(failure)
    assert cache_files(opts.cache_dir) == []


def test_tamper_connection_refused(options):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    opts = options(mirror=f"http://127.0.0.1:{port}", arch_names="amd64")
    [failure] = fetch(opts).failures
    assert failure.reason == "connection failed"
    assert "Connection refused" in str(failure) and "--mirror" in str(failure)
    assert cache_files(opts.cache_dir) == []


def test_tamper_cached_file_modified_is_never_returned(options, release):
    """The matrix row for the cache: modified bytes are rejected even if the source is gone."""
    first = fetch(options(arch_names="amd64"))
    first.fetched[0].path.write_bytes(b"#!/bin/sh\necho owned\n")
    shutil.rmtree(release[0] / "9.9")
    report = fetch(options(arch_names="amd64"))
    assert not report.fetched
    assert any("modified on disk after it was verified" in w for w in report.warnings)
    assert report.failures[0].reason == "missing"
    assert cache_files(options().cache_dir) == []


def test_one_bad_arch_does_not_block_the_others(mirror, options, release):
    _flip_byte(release[0])
    report = fetch(options(mirror=mirror.url))
    assert [f.arch for f in report.failures] == ["amd64"]
    assert len(report.fetched) == 8


def test_cache_record_and_blob_rewritten_together_still_fail_the_signature(options, release):
    """Hashes in the cache are only bookkeeping: the signature is re-checked on every use."""
    import json
    from builder.gosu.download import Cache
    opts = options(arch_names="amd64")
    first = fetch(opts).fetched[0]
    evil = fake_elf(arches.get("amd64"), b"evil")
    digest = hashlib.sha256(evil).hexdigest()
    cache = Cache(opts.cache_dir)
    cache.blob(digest).write_bytes(evil)
    rec_path = cache.record_path(opts.fingerprint, "9.9", "amd64")
    rec = json.loads(rec_path.read_text())
    rec_path.write_text(json.dumps({**rec, "sha256": digest}))
    report = fetch(opts)
    assert any("bad signature" in w for w in report.warnings)
    assert report.ok and report.fetched[0].sha256 == first.sha256 != digest
