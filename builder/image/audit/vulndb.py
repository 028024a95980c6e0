"""Where the Go vulnerability database is and how current it is: vuln.go.dev, a mirror, or a local copy.

govulncheck takes the database as a URL (`-db`); its modification time
(index/db.json) is part of a scan's cache key, so a warm build rescans only
when the database changed. Reading it is the one request made here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from builder.core.errors import BuilderError


class VulnError(BuilderError):
    """The database or the scanner cannot be used; the message names which and what to do."""


def url(db: str) -> str:
    """What govulncheck's -db takes: an https URL as it is, a directory as a file:// URL."""
    return db if db.startswith(("https://", "http://", "file://")) else Path(db).resolve().as_uri()


def local_dir(db: str) -> Path | None:
    if db.startswith("file://"):
        return Path(db.removeprefix("file://"))
    return None if db.startswith(("https://", "http://")) else Path(db)


def modified(db: str, timeout: float, required: bool) -> str | None:
    """The database's modification time (index/db.json); None when a remote one cannot be reached.

    A local directory that is missing or malformed is the user's to fix: VulnError naming it. An unreachable
    remote one is an error only when the scan is `required`.
    """
    local = local_dir(db)
    if local is not None:
        path = local / "index" / "db.json"
        try:
            when = json.loads(path.read_text())["modified"]
            json.loads((local / "index" / "modules.json").read_text())
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise VulnError(f"vulnerability database {db}: {path.parent}/db.json or modules.json is missing "
                            f"or malformed ({e.__class__.__name__}: {e}); give a directory in vuln.go.dev's layout "
                            "(index/db.json, index/modules.json, ID/<id>.json) with --vuln-db or vuln.db") from None
        return str(when)
    index = db.rstrip("/") + "/index/db.json"
    try:
        with urllib.request.urlopen(index, timeout=timeout) as r:
            return str(json.loads(r.read())["modified"])
    except (OSError, urllib.error.URLError) as e:
        reason = getattr(e, "reason", e)
        if required:
            raise VulnError(f"vulnerability database {db} cannot be reached ({reason}) and vuln.require "
                            "is set: nothing was built") from None
        return None
    except (ValueError, KeyError, TypeError) as e:
        raise VulnError(f"vulnerability database {db}: {index} is not a database index ({e})") from None


MAX_AGE_DAYS = 60  # Go's database gains entries every week; a copy this old misses a Go security release or two


def age_warning(modified: str, today: dt.date) -> str:
    """A warning naming the copy's date when it is older than MAX_AGE_DAYS ("" otherwise)."""
    try:
        day = dt.date.fromisoformat(modified[:10])
    except ValueError:
        return f"the local copy's date {modified!r} cannot be read: treat its result as old"
    age = (today - day).days
    if age <= MAX_AGE_DAYS:
        return ""
    return (f"the local copy is from {day} ({age} days old, more than {MAX_AGE_DAYS}): vulnerabilities published "
            "since are not in it, so a clean result proves only what it knew; refresh it from vuln.go.dev")


def unpacked(source: Path, cache_dir: Path, sha256: str = "") -> Path:
    """A copy given as a .tar.xz (as ../shared/vulndb holds it) unpacked once under `cache_dir`; a directory as
    it is. The tarball is checked against `sha256` (when pinned) before anything is unpacked, and unpacked
    into a temporary directory renamed into place, so no half-copy is ever scanned against."""
    if source.is_dir():
        return source
    try:
        data = source.read_bytes()
    except OSError as e:
        raise VulnError(f"local vulnerability database {source}: {e.strerror}; fix local.vuln_db") from None
    got = hashlib.sha256(data).hexdigest()
    if sha256 and got != sha256:
        raise VulnError(f"local vulnerability database {source}: sha256 {got}, but local.vuln_db_sha256 pins "
                        f"{sha256}; nothing was unpacked: replace the copy or update the pin")
    target = cache_dir / got[:16]
    if not target.is_dir():
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".unpack-"))
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
                tar.extractall(tmp, filter="data")
            os.replace(tmp, target)
        except (tarfile.TarError, OSError) as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise VulnError(f"local vulnerability database {source} cannot be unpacked ({e}); fix local.vuln_db"
                            ) from None
    found = sorted(p.parent.parent for p in target.glob("*/index/db.json"))
    if len(found) != 1:
        raise VulnError(f"local vulnerability database {source} holds no one directory with index/db.json; "
                        "give a tarball of vuln.go.dev's layout")
    return found[0]
