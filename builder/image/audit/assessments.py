"""Reviewed assessments of govulncheck's findings: a person's judgement that a vulnerable function present in
gosu can or cannot hurt, kept in the repository (vuln-assessments.yaml) with who made it, when, and for which
gosu builds.

A symbol scan proves that a function is linked in, not that gosu calls it with
input an adversary controls; upstream keeps such judgements too (tianon/gosu's
govulncheck-with-excludes.sh). Here each one is data the VEX quotes, and the
publish guard lets a finding through only when a `not_affected` assessment
covers that very binary. An assessment is applied to a finding only when its
ID is reported with a function present for a gosu it covers; one applied to
nothing in a run is named on that run, never kept quietly.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import asdict, dataclass

from builder.core.errors import BuilderError

STATUSES = ("not_affected", "affected")
# OpenVEX v0.2.0's justifications for not_affected.
JUSTIFICATIONS = ("component_not_present", "vulnerable_code_not_present", "vulnerable_code_not_in_execute_path",
                  "vulnerable_code_cannot_be_controlled_by_adversary", "inline_mitigations_already_exist")
SOURCES = ("github", "debian", "rebuild")
ID_RE = re.compile(r"^GO-\d{4}-\d{4,}$")
KEYS = {"status", "justification", "impact", "action", "reviewed_by", "reviewed_on", "covers", "read"}


class AssessmentError(BuilderError):
    """The assessments file is unusable; the message names the file, the ID and the key."""


@dataclass(frozen=True)
class Covers:
    """One gosu build an assessment speaks for: a version (from one source, or any), or one binary by sha256."""
    version: str = ""
    source: str = ""
    sha256: str = ""

    def matches(self, version: str, source: str, sha256: str) -> bool:
        if self.sha256:
            return self.sha256 == sha256
        return self.version == version and self.source in ("", source)

    def __str__(self) -> str:
        if self.sha256:
            return f"sha256:{self.sha256[:12]}"
        return f"gosu {self.version}" + (f" ({self.source})" if self.source else "")


@dataclass(frozen=True)
class Assessment:
    id: str
    status: str
    impact: str
    reviewed_by: str
    reviewed_on: str            # YYYY-MM-DD
    covers: tuple[Covers, ...]
    justification: str = ""     # not_affected only
    action: str = ""            # affected only: what to do (else the scan's own advice)

    def covers_binary(self, version: str, source: str, sha256: str) -> bool:
        return any(c.matches(version, source, sha256) for c in self.covers)

    def words(self) -> dict:
        """What the VEX quotes: everything but `covers` (which binary is said by the statement's product)."""
        d = asdict(self)
        d.pop("covers")
        return d


@dataclass(frozen=True)
class Assessments:
    file: str                   # as the user names it, for messages and the VEX
    items: tuple[Assessment, ...] = ()

    def for_binary(self, vid: str, version: str, source: str, sha256: str) -> Assessment | None:
        return next((a for a in self.items if a.id == vid and a.covers_binary(version, source, sha256)), None)

    def named(self, vid: str) -> Assessment | None:
        return next((a for a in self.items if a.id == vid), None)


def digest(applied: tuple[Assessment, ...]) -> str:
    """A short digest of the assessments applied to one binary: part of its vulns label, so changing a word of
    one rebuilds the images (and VEX) that quote it."""
    body = json.dumps([a.words() for a in sorted(applied, key=lambda a: a.id)], sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:12]


def parse(data, file: str) -> Assessments:
    """Assessments from the file's parsed YAML (`assessments: {ID: {...}}`); AssessmentError on the first fault."""
    if data is None:
        return Assessments(file)
    if not isinstance(data, dict) or set(data) - {"assessments"}:
        raise AssessmentError(f"{file}: the top level must be one key, `assessments`, mapping IDs to assessments")
    entries = data.get("assessments") or {}
    if not isinstance(entries, dict):
        raise AssessmentError(f"{file}: `assessments` must map each vulnerability ID to its assessment")
    return Assessments(file, tuple(_one(file, str(vid), body) for vid, body in entries.items()))


def _one(file: str, vid: str, body) -> Assessment:
    def bad(key: str, why: str) -> AssessmentError:
        return AssessmentError(f"{file}: {vid}: {key}: {why}")
    if not ID_RE.match(vid):
        raise bad("id", "not a Go vulnerability ID (GO-YYYY-NNNN)")
    if not isinstance(body, dict):
        raise bad("(entry)", "must be a mapping with status, impact, reviewed_by, reviewed_on and covers")
    unknown = sorted(set(body) - KEYS)
    if unknown:
        raise bad(unknown[0], f"unknown key; the keys are {', '.join(sorted(KEYS))}")
    status = _text(body, "status", bad)
    if status not in STATUSES:
        raise bad("status", f"{status!r} is not one of {', '.join(STATUSES)}")
    justification = str(body.get("justification") or "")
    if status == "not_affected" and justification not in JUSTIFICATIONS:
        raise bad("justification", f"{justification or '(missing)'!r} is not an OpenVEX justification "
                                   f"({', '.join(JUSTIFICATIONS)})")
    if status == "affected" and justification:
        raise bad("justification", "only a not_affected assessment has one")
    return Assessment(vid, status, _text(body, "impact", bad), _text(body, "reviewed_by", bad),
                      _date(body, bad), _covers(body.get("covers"), bad), justification,
                      str(body.get("action") or "").strip())


def _text(body: dict, key: str, bad) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise bad(key, "missing or empty")
    return " ".join(value.split())


def _date(body: dict, bad) -> str:
    value = body.get("reviewed_on")
    if isinstance(value, dt.date):
        return value.isoformat()
    try:
        return dt.date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise bad("reviewed_on", f"{value!r} is not a date (YYYY-MM-DD)") from None


def _covers(value, bad) -> tuple[Covers, ...]:
    if not isinstance(value, list) or not value:
        raise bad("covers", "missing: list the gosu builds reviewed ({version, source} or {sha256} each)")
    out = []
    for c in value:
        if not isinstance(c, dict) or not (set(c) <= {"version", "source", "sha256"}):
            raise bad("covers", f"{c!r} is not {{version: X, source: github|debian|rebuild}} or {{sha256: HEX}}")
        sha, version, source = (str(c.get(k) or "").lower() if k == "sha256" else str(c.get(k) or "")
                                for k in ("sha256", "version", "source"))
        if sha and not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise bad("covers", f"sha256 {sha!r} is not 64 hex digits")
        if not sha and not version:
            raise bad("covers", f"{c!r} names neither a version nor a sha256")
        if source and source not in SOURCES:
            raise bad("covers", f"source {source!r} is not one of {', '.join(SOURCES)}")
        out.append(Covers(version, source, sha))
    return tuple(out)
