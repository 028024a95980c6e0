"""OpenPGP fingerprints as the project pins them: whole, never a short key id."""

from __future__ import annotations

import re


class FingerprintError(ValueError):
    """A fingerprint that is not a whole one: short key ids can be forged."""


def normalize_fingerprint(fpr: str) -> str:
    """The fingerprint in upper case without spaces, as gpg prints it."""
    clean = re.sub(r"\s+", "", fpr).upper()
    if not re.fullmatch(r"[0-9A-F]{40}|[0-9A-F]{64}", clean):
        raise FingerprintError(
            f"fingerprint {fpr!r} is not a full 40- or 64-hex-digit OpenPGP fingerprint; "
            "pass the whole fingerprint (short key ids can be forged)"
        )
    return clean
