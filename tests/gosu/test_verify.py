"""Signature rules below the fetch stage: keyrings, signer identity, ELF, SHA256SUMS parsing."""

import threading

import gnupg
import pytest

from builder.core import arches
from builder.core.fingerprint import FingerprintError, normalize_fingerprint
from builder.gosu.signature import (Keyring, PinnedKeyError, VerificationError, check_elf, parse_sha256sums, pinned_keyring)

from tests.conftest import ROOT, SHARED, skip_or_fail
from tests.support.fakerelease import fake_elf

REAL_FPR = "B42F6819007F00F88E364FD4036A9C25BF357DD4"


def test_real_gosu_1_14_verifies_against_the_real_pinned_key():
    rel = SHARED / "gosu-release" / "1.14"
    if not rel.is_dir():
        skip_or_fail(f"{rel} not found: the real signed gosu 1.14 artifact lives in ../shared")
    key = ROOT / "keys" / f"{REAL_FPR}.asc"
    with pinned_keyring(key, REAL_FPR) as kr:
        kr.verify(rel / "gosu-amd64", rel / "gosu-amd64.asc", "gosu-amd64")  # binary .asc
    check_elf(rel / "gosu-amd64", arches.get("amd64"))
    with pytest.raises(VerificationError, match="wrong ELF arch"):
        check_elf(rel / "gosu-amd64", arches.get("arm64"))


def test_real_artifact_is_rejected_by_a_test_key(release_key, tmp_path):
    rel = SHARED / "gosu-release" / "1.14"
    if not rel.is_dir():
        skip_or_fail(f"{rel} not found")
    with pinned_keyring(release_key.export(tmp_path / "k.asc"), release_key.fingerprint) as kr:
        with pytest.raises(VerificationError) as e:
            kr.verify(rel / "gosu-amd64", rel / "gosu-amd64.asc", "gosu-amd64")
    assert e.value.reason == "wrong key" and REAL_FPR in str(e.value)


def test_good_signature_from_another_key_in_the_keyring_is_rejected(tmp_path, release_key, attacker_key):
    """Even if the attacker's key got into the keyring, only the pinned primary fingerprint counts."""
    home = tmp_path / "g"
    home.mkdir(mode=0o700)
    gpg = gnupg.GPG(gnupghome=str(home))
    for k in (release_key, attacker_key):
        gpg.import_keys_file(str(k.export(tmp_path / f"{k.fingerprint}.asc")))
    data = tmp_path / "gosu-amd64"
    data.write_bytes(b"payload")
    sig = attacker_key.sign(data)
    kr = Keyring(gpg, release_key.fingerprint, tmp_path / "k", threading.Lock())
    with pytest.raises(VerificationError) as e:
        kr.verify(data, sig, "gosu-amd64")
    assert e.value.reason == "wrong key" and "is a good signature by" in str(e.value)
    release_key.sign(data)
    kr.verify(data, sig, "gosu-amd64")


def test_key_file_must_exist_and_hold_a_key(tmp_path):
    with pytest.raises(PinnedKeyError, match="does not exist"):
        with pinned_keyring(tmp_path / "nope.asc", REAL_FPR):
            pass
    junk = tmp_path / "junk.asc"
    junk.write_text("not a key")
    with pytest.raises(PinnedKeyError, match="holds no OpenPGP key"):
        with pinned_keyring(junk, REAL_FPR):
            pass


def test_real_key_file_does_not_satisfy_another_fingerprint():
    with pytest.raises(PinnedKeyError, match=f"holds the keys {REAL_FPR}"):
        with pinned_keyring(ROOT / "keys" / f"{REAL_FPR}.asc", "A" * 40):
            pass


@pytest.mark.parametrize("bad", ["036A9C25BF357DD4", "xyz", ""])
def test_short_or_malformed_fingerprints_are_refused(bad):
    with pytest.raises(FingerprintError, match="full 40- or 64-hex-digit"):
        normalize_fingerprint(bad)
    with pytest.raises(PinnedKeyError, match="full 40- or 64-hex-digit"), \
            pinned_keyring(ROOT / "keys" / f"{REAL_FPR}.asc", bad):
        pass


def test_fingerprint_with_spaces_is_normalized():
    assert normalize_fingerprint("b42f 6819 007f 00f8 8e36  4fd4 036a 9c25 bf35 7dd4") == REAL_FPR


@pytest.mark.parametrize("arch", arches.ARCHES, ids=lambda a: a.dpkg)
def test_elf_header_matches_every_arch_and_only_it(tmp_path, arch):
    f = tmp_path / "b"
    f.write_bytes(fake_elf(arch))
    check_elf(f, arch)
    for other in arches.ARCHES:
        if (other.elf_machine, other.elf_class, other.elf_data) != (arch.elf_machine, arch.elf_class, arch.elf_data):
            with pytest.raises(VerificationError, match="wrong ELF arch"):
                check_elf(f, other)


def test_non_elf_and_short_files_are_rejected(tmp_path):
    f = tmp_path / "b"
    for data in (b"", b"\x7fEL", b"#!/bin/sh\necho hi\n" * 10):
        f.write_bytes(data)
        with pytest.raises(VerificationError, match="not an ELF executable"):
            check_elf(f, arches.get("amd64"))


def test_sha256sums_parsing():
    h = "a" * 64
    assert parse_sha256sums(f"{h}  gosu-amd64\n{h} *gosu-arm64\n\n") == {"gosu-amd64": h, "gosu-arm64": h}
    with pytest.raises(VerificationError, match="line 2"):
        parse_sha256sums(f"{h}  gosu-amd64\nbogus line\n")
