"""Where the Go vulnerability database is and how current it is: vuln.go.dev, a mirror, or a local copy.

govulncheck takes the database as a URL (`-db`); its modification time
(index/db.json) is part of a scan's cache key, so a warm build rescans only
when the database changed. Reading it is the one request made here.
"""

from __future__ import annotations

import json
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
