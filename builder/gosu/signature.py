"""Is this gosu binary authentic, and is it the architecture it claims to be?

Three independent checks, each failing closed with a message that names the
file and the reason: the detached OpenPGP signature by the pinned key (through
python-gnupg, in a throwaway GNUPGHOME holding only that key), the release's
signed SHA256SUMS, and the ELF header.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import re
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import gnupg

from builder.core.errors import BuilderError
from builder.core.arches import Arch
from builder.core.fingerprint import FingerprintError, normalize_fingerprint

KEYS_DIR = Path(__file__).resolve().parents[2] / "keys"

ELF_MACHINES = {
    3: "i386", 8: "MIPS", 21: "PowerPC64", 22: "S/390", 40: "ARM",
    62: "x86-64", 183: "AArch64", 243: "RISC-V",
}


class VerificationError(BuilderError):
    """A check failed; `reason` is a short category, the message says what to do."""

    def __init__(self, file: str, reason: str, detail: str):
        super().__init__(f"{file}: {reason}: {detail}")
        self.file, self.reason, self.detail = file, reason, detail


class PinnedKeyError(ValueError):
    """The pinned key itself is unusable; no binary can be verified with it."""

    def __init__(self, message: str, reason: str = "pinned key"):
        super().__init__(message)
        self.reason = reason


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Keyring:
    """A GNUPGHOME that holds exactly the pinned keys (one for a release, a few for an archive)."""

    gpg: gnupg.GPG
    fingerprint: str      # the pinned key, or for an archive every pinned key joined by commas
    key_file: Path
    # gpg processes are independent, but serialising them keeps the keybox
    # free of lock contention when arches are verified in parallel threads.
    _lock: threading.Lock

    @property
    def fingerprints(self) -> frozenset[str]:
        return frozenset(self.fingerprint.split(","))

    def verify(self, data: Path, signature: Path, name: str) -> None:
        """Accept only one good signature whose *primary* key is the pinned one."""
        with self._lock:
            result = self.gpg.verify_file(str(signature), data_filename=str(data))
        status = _status_lines(result.stderr or "")
        sig_name = signature.name
        newsigs = sum(1 for k, _ in status if k == "NEWSIG")
        keys = {k for k, _ in status}
        if newsigs == 0 or "NODATA" in keys:
            raise VerificationError(
                sig_name, "missing signature",
                f"holds no OpenPGP signature; re-download {name}.asc from the release",
            )
        if newsigs > 1:
            raise VerificationError(
                sig_name, "multiple signatures",
                f"holds {newsigs} signatures; exactly one by {self.fingerprint} is accepted",
            )
        if "BADSIG" in keys:
            raise VerificationError(
                name, "bad signature",
                f"does not match {sig_name} (the file was altered or truncated); delete it and fetch again",
            )
        if "EXPKEYSIG" in keys:
            raise VerificationError(name, "expired key", _expired_advice(self.fingerprint, self.key_file))
        if "REVKEYSIG" in keys:
            raise VerificationError(name, "revoked key", f"the pinned key {self.fingerprint} has been revoked; do not trust this release")
        if "ERRSIG" in keys:
            signer = _errsig_signer(status)
            raise VerificationError(
                name, "wrong key",
                f"{sig_name} was made by {signer}, not by the pinned key {self.fingerprint}",
            )
        valid = [v.split() for k, v in status if k == "VALIDSIG"]
        if "GOODSIG" not in keys or len(valid) != 1:
            raise VerificationError(name, "bad signature", f"gpg did not report one good signature ({result.status})")
        primary = valid[0][9] if len(valid[0]) >= 10 else valid[0][0]
        if primary.upper() not in self.fingerprints:
            raise VerificationError(
                name, "wrong key",
                f"{sig_name} is a good signature by {primary}, not by the pinned key {self.fingerprint}",
            )


    def verify_clearsigned(self, signed: Path, name: str) -> tuple[bytes, str]:
        """(the signed text, the pinned primary that vouched) for a clearsigned file such as InRelease.

        gpg itself returns the text that the signatures cover, so nothing
        outside them (or dash-escaped inside) is ever read. Signatures by keys
        we do not hold neither help nor hurt; a bad one by a pinned key does.
        """
        with self._lock:
            result = self.gpg.decrypt_file(str(signed))
        sigs = _signature_groups(_status_lines(result.stderr or ""))
        if not sigs:
            raise VerificationError(name, "missing signature", "is not clearsigned (no OpenPGP signature in it)")
        if any("BADSIG" in g for g in sigs):
            raise VerificationError(name, "bad signature",
                                    "was changed after it was signed (a signature by a pinned key does not match)")
        good = [g["VALIDSIG"].split() for g in sigs if "GOODSIG" in g and "VALIDSIG" in g]
        pinned = [v[9].upper() if len(v) >= 10 else v[0].upper() for v in good]
        pinned = [p for p in pinned if p in self.fingerprints]
        if pinned:
            return result.data, pinned[0]
        if any("EXPKEYSIG" in g for g in sigs):
            raise VerificationError(name, "expired key", "is signed only by an expired pinned key; refresh keys/ "
                                    "from a current debian-archive-keyring (see keys/README.md)")
        if any("REVKEYSIG" in g for g in sigs):
            raise VerificationError(name, "revoked key", "is signed only by a revoked pinned key; do not trust it")
        signers = sorted({_errsig_signer([("ERRSIG", g["ERRSIG"])]) for g in sigs if "ERRSIG" in g})
        raise VerificationError(name, "wrong key",
                                f"carries no good signature by a pinned key ({', '.join(sorted(self.fingerprints))})"
                                + (f"; it is signed by {', '.join(signers)}" if signers else ""))


def _signature_groups(status: list[tuple[str, str]]) -> list[dict[str, str]]:
    """gpg reports each signature as NEWSIG followed by its own status lines."""
    groups: list[dict[str, str]] = []
    for key, value in status:
        if key == "NEWSIG":
            groups.append({})
        elif groups:
            groups[-1].setdefault(key, value)
    return groups


def _status_lines(stderr: str) -> list[tuple[str, str]]:
    out = []
    for line in stderr.splitlines():
        if line.startswith("[GNUPG:] "):
            key, _, value = line[9:].partition(" ")
            out.append((key, value))
    return out


def _errsig_signer(status: list[tuple[str, str]]) -> str:
    for key, value in status:
        if key == "ERRSIG":
            parts = value.split()
            # Since GnuPG 2.2.7 the issuer fingerprint is field 7.
            return f"key {parts[6] if len(parts) >= 7 and parts[6] != '-' else parts[0]}"
    return "an unknown key"


def _expired_advice(fpr: str, key_file: Path) -> str:
    return (
        f"the pinned key {fpr} in {key_file} has expired; replace that file with a current "
        "export of the same key (see keys/README.md), never with a keyserver lookup"
    )


@contextlib.contextmanager
def pinned_keyring(key_file: Path, fingerprint: str, *more: tuple[Path, str]) -> Iterator[Keyring]:
    """Yield a Keyring in a fresh GNUPGHOME, or raise PinnedKeyError.

    Each key file must hold exactly its pinned key; `more` adds further
    (file, fingerprint) pairs for an archive signed by several keys.
    """
    try:
        pairs = [(key_file, normalize_fingerprint(fingerprint))] + [(f, normalize_fingerprint(p)) for f, p in more]
    except FingerprintError as e:
        raise PinnedKeyError(str(e)) from None
    # A short path: gpg-agent socket paths must fit in sun_path (108 bytes).
    home = tempfile.mkdtemp(prefix="gk", dir="/tmp")
    try:
        gpg = gnupg.GPG(gnupghome=home)
        for file, fpr in pairs:
            _import_exactly(gpg, file, fpr)
        yield Keyring(gpg, ",".join(p for _, p in pairs), key_file, threading.Lock())
    finally:
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        shutil.rmtree(home, ignore_errors=True)


def _import_exactly(gpg: gnupg.GPG, key_file: Path, fpr: str) -> None:
    if not key_file.is_file():
        raise PinnedKeyError(f"key file {key_file} does not exist; pass --key FILE or restore keys/ from git")
    imported = gpg.import_keys_file(str(key_file))
    found = sorted({f.upper() for f in imported.fingerprints if f})
    if found != [fpr]:
        what = "no OpenPGP key" if not found else f"the keys {', '.join(found)}"
        raise PinnedKeyError(
            f"key file {key_file} holds {what}; it must hold exactly the pinned key {fpr} "
            "(change --fingerprint only if you mean to trust a different key)"
        )
    _check_key_validity(gpg, fpr, key_file)


def is_project_key(key_file: Path, fingerprint: str) -> bool:
    """A production trust root: a key committed under the project's keys/ as <FINGERPRINT>.asc.

    Anything else (a test mirror's throwaway key, a --key from elsewhere) makes
    what it vouches for a trial input.
    """
    try:
        path = key_file.resolve()
    except OSError:
        return False
    return KEYS_DIR in path.parents and path.name == f"{fingerprint.upper()}.asc"


def _check_key_validity(gpg: gnupg.GPG, fpr: str, key_file: Path) -> None:
    keys = [k for k in gpg.list_keys() if k.get("fingerprint", "").upper() == fpr]
    if not keys:
        raise PinnedKeyError(f"key file {key_file}: gpg could not list the imported key {fpr}")
    key = keys[0]
    if key.get("trust") == "r":
        raise PinnedKeyError(f"the pinned key {fpr} in {key_file} has been revoked; do not use releases it signed",
                             "revoked key")
    expires = key.get("expires")
    if key.get("trust") == "e" or (expires and int(expires) <= dt.datetime.now(dt.timezone.utc).timestamp()):
        when = dt.datetime.fromtimestamp(int(expires), dt.timezone.utc).date() if expires else "an unknown date"
        raise PinnedKeyError(_expired_advice(fpr, key_file) + f" (expired on {when})", "expired key")


def parse_sha256sums(text: str, name: str = "SHA256SUMS") -> dict[str, str]:
    """'<hex>  <file>' or '<hex> *<file>' lines -> {file: hex}."""
    sums: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = re.fullmatch(r"([0-9a-fA-F]{64}) [ *](\S+)\s*", line)
        if not m:
            raise VerificationError(name, "malformed checksum file", f"line {n} is not '<sha256>  <file>': {line[:80]!r}")
        sums[m.group(2)] = m.group(1).lower()
    return sums


def check_sha256(name: str, actual: str, expected: str, source: str) -> None:
    if actual != expected:
        raise VerificationError(
            name, "checksum mismatch",
            f"sha256 is {actual} but {source} says {expected}; do not use this file",
        )


def check_elf(path: Path, arch: Arch, name: str | None = None) -> None:
    """The header must be an executable for exactly the architecture it is filed under."""
    name = name or path.name
    with open(path, "rb") as f:
        head = f.read(20)
    if len(head) < 20 or head[:4] != b"\x7fELF":
        raise VerificationError(name, "not an ELF executable", f"starts with {head[:4]!r}, so it cannot be a gosu binary")
    ei_class, ei_data = head[4], head[5]
    order = "little" if ei_data == 1 else "big"
    e_type = int.from_bytes(head[16:18], order)
    machine = int.from_bytes(head[18:20], order)
    if e_type not in (2, 3):
        raise VerificationError(name, "wrong ELF type", f"e_type {e_type} is not an executable")
    if (machine, ei_class, ei_data) != (arch.elf_machine, arch.elf_class, arch.elf_data):
        got = f"{ELF_MACHINES.get(machine, f'machine {machine}')} {32 * ei_class}-bit {'LE' if ei_data == 1 else 'BE'}"
        want = (f"{ELF_MACHINES.get(arch.elf_machine)} {32 * arch.elf_class}-bit "
                f"{'LE' if arch.elf_data == 1 else 'BE'}")
        raise VerificationError(
            name, "wrong ELF arch",
            f"is an {got} executable but is filed under {arch.dpkg} ({want}); the release is mislabelled",
        )
