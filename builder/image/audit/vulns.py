"""gosu scanned with Go's own vulnerability scanner (govulncheck, binary mode), once per binary and database.

govulncheck (Debian's build, local/tools.py) reads the binary's build
information and symbol table and the Go vulnerability database (vuln.go.dev,
or a directory in its layout), and reports each entry for the binary's Go
release or modules at up to three levels: the module version is affected
("by version": what a scanner that only reads versions reports), a vulnerable
package is linked in, a vulnerable function is present ("symbol": a finding
that applies). Its JSON stream is read here into a `Scan`; nothing else is
contacted, and a result is cached by (gosu's sha256, database location and
modification time, scanner), so a warm build does not rescan.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from builder.image.audit import goinfo, vulndb
from builder.image.audit.assessments import Assessment, Assessments, digest as assessments_digest
from builder.image.audit.vulndb import VulnError

LEVELS = ("version", "package", "symbol")


@dataclass(frozen=True)
class Settings:
    db: str                 # https://... or a local directory in vuln.go.dev's layout
    scanner: Path           # the govulncheck binary
    scanner_version: str    # its Debian package version (part of the cache key)
    cache_dir: Path
    timeout: float = 30
    required: bool = False  # a scan that cannot happen (database unreachable) is an error, not a warning
    assessments: Assessments = Assessments("")  # reviewed judgements of findings (vuln-assessments.yaml)
    # A local copy (local.vuln_db, unpacked) taken when a remote `db` cannot be reached and the scan is not
    # required: the offline quick start still scans, and says the copy's date.
    fallback: str = ""
    today: dt.date | None = None   # the day a fallback copy's age is told against (the wiring reads the clock)


@dataclass(frozen=True)
class Vuln:
    id: str
    aliases: tuple[str, ...]
    summary: str
    module: str              # stdlib or a module path, as the binary names it
    version: str             # the version the binary has (v1.24.4 for go1.24.4)
    fixed: str               # the first fixed version ("" if none)
    level: str               # version, package or symbol (the most precise one govulncheck found)
    packages: tuple[str, ...] = ()
    symbols: tuple[str, ...] = ()  # package.Function present in the binary


@dataclass(frozen=True)
class Scan:
    gosu_sha256: str
    db: str
    db_modified: str         # the database's own modification time (index/db.json)
    entries_modified: str    # newest modification among the entries for gosu's Go release and modules
    scanner: str
    vulns: tuple[Vuln, ...]
    withdrawn: tuple[str, ...] = ()  # entries for its modules the database withdrew: no statement is made
    stale: str = ""          # why the database may predate the binary's Go release ("" if not)
    # govulncheck could read the binary's function table (.gopclntab, or .symtab to find it). Without one it
    # reports every entry for the binary's versions as if its functions were present: then nothing is known
    # beyond the versions, and no entry is said to apply or not.
    symbols: bool = True
    cached: bool = field(default=False, compare=False)
    # The reviewed assessments that cover this binary and one of its present findings (`review`); not cached.
    reviews: tuple[Assessment, ...] = ()

    @property
    def applicable(self) -> tuple[Vuln, ...]:
        """Findings that apply: a vulnerable function present in the binary (none known without a function table)."""
        return tuple(v for v in self.vulns if v.level == "symbol") if self.symbols else ()

    def review_of(self, vid: str) -> Assessment | None:
        return next((a for a in self.reviews if a.id == vid), None)

    @property
    def cleared(self) -> tuple[Vuln, ...]:
        """Present findings a reviewed assessment says do not affect gosu (`not_affected`)."""
        return tuple(v for v in self.applicable if (r := self.review_of(v.id)) and r.status == "not_affected")

    @property
    def affected(self) -> tuple[Vuln, ...]:
        """Present findings no review clears: what the VEX calls affected and the publish guard refuses."""
        cleared = set(self.cleared)
        return tuple(v for v in self.applicable if v not in cleared)

    def count(self, level: str) -> int:
        return sum(1 for v in self.vulns if LEVELS.index(v.level) >= LEVELS.index(level))

    @property
    def label(self) -> str:
        """org.base-gosu.gosu.vulns: findings that apply, what a version-only scanner reports, and the date of
        the database as far as this gosu is concerned (its newest entry for gosu's Go release or modules)."""
        applying = len(self.affected) if self.symbols else "unknown"
        reviewed = f";reviewed={len(self.reviews)}:{assessments_digest(self.reviews)}" if self.reviews else ""
        return (f"{applying};by-version={self.count('version')}{reviewed};"
                f"db={self.entries_modified or self.db_modified}")

    def summary(self) -> str:
        if not self.symbols:
            return (f"no function table in the binary, so whether any of {self.count('version')} by version applies "
                    f"is unknown (database {self.db}, modified {self.db_modified})")
        ids = ", ".join(f"{v.id} ({', '.join(v.symbols)})" for v in self.affected)
        cleared = ", ".join(v.id for v in self.cleared)
        reviewed = f"; {len(self.cleared)} present but reviewed not_affected: {cleared}" if cleared else ""
        return (f"{len(self.affected)} applying{': ' + ids if ids else ''}{reviewed}; {self.count('package')} in "
                f"packages linked in, {self.count('version')} by version only (database {self.db}, modified "
                f"{self.db_modified})")

    def to_json(self) -> str:
        d = asdict(self)
        d.pop("cached")
        d.pop("reviews")
        return json.dumps(d, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Scan":
        d = json.loads(text)
        d["vulns"] = tuple(Vuln(**{**v, "aliases": tuple(v["aliases"]), "packages": tuple(v["packages"]),
                                   "symbols": tuple(v["symbols"])}) for v in d["vulns"])
        d["withdrawn"] = tuple(d["withdrawn"])
        d.pop("reviews", None)
        return cls(**d, cached=True)


def parse_label(value: str) -> tuple[int, str]:
    """(findings that apply, database date) from an org.base-gosu.gosu.vulns label."""
    first, *rest = value.split(";")
    fields = dict(p.split("=", 1) for p in rest if "=" in p)
    if not (first.isdigit() or first == "unknown") or "db" not in fields:
        raise ValueError(f"org.base-gosu.gosu.vulns label {value!r} is not '<count>;by-version=<n>;db=<date>'")
    return (int(first) if first.isdigit() else -1), fields["db"]


def _cache_path(settings: Settings, sha256: str, modified: str) -> Path:
    key = hashlib.sha256(json.dumps([sha256, vulndb.url(settings.db), modified, settings.scanner_version]).encode())
    return settings.cache_dir / f"{sha256[:16]}-{key.hexdigest()[:32]}.json"


def scan(settings: Settings, binary: Path, sha256: str, modified: str) -> Scan:
    """The scan of one gosu against the database as of `modified`: from the cache, else govulncheck run once."""
    cached = _cache_path(settings, sha256, modified)
    try:
        return Scan.from_json(cached.read_text())
    except (OSError, ValueError, KeyError, TypeError):
        pass
    data = binary.read_bytes()
    try:
        go = goinfo.parse(data, binary.name).go_version
    except goinfo.GoInfoError:
        go = ""
    result = read_stream(run(settings, binary), sha256, settings.db, modified, settings.scanner_version, go)
    result = dataclasses.replace(result, symbols=bool({".gopclntab", ".symtab"} & goinfo.elf_sections(data)))
    cached.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cached.parent, prefix=".scan-")
    with os.fdopen(fd, "w") as f:
        f.write(result.to_json())
    os.replace(tmp, cached)
    return result


def run(settings: Settings, binary: Path) -> str:
    """govulncheck's JSON stream for `binary`; the database is named explicitly, so nothing else is contacted."""
    cmd = [str(settings.scanner), "-mode", "binary", "-json", "-db", vulndb.url(settings.db), str(binary)]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
           "GOFLAGS": "", "GOTOOLCHAIN": "local"}
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise VulnError(f"govulncheck could not run ({e}); `invoke up` installs it") from None
    if p.returncode not in (0, 3):  # 3: vulnerabilities found (text mode)
        last = (p.stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1]
        raise VulnError(f"govulncheck could not scan {binary.name} against {settings.db}: {last}")
    return p.stdout


def messages(stream: str):
    """The JSON objects of govulncheck's stream, in order (concatenated, not one per line)."""
    dec, i, n = json.JSONDecoder(), 0, len(stream)
    while True:
        while i < n and stream[i].isspace():
            i += 1
        if i >= n:
            return
        obj, i = dec.raw_decode(stream, i)
        yield obj


def read_stream(stream: str, sha256: str, db: str, modified: str, scanner: str, go: str = "") -> Scan:
    """A Scan from govulncheck 1.0's JSON: `osv` messages (every entry for the binary's modules, affecting or
    not) and `finding` messages, emitted per entry at module level first, then package, then symbol level.

    A finding with a function is symbol level. For the standard library a module-level finding already names
    a package, so a package-level one is the second finding without a function for the same entry.
    """
    osvs: dict[str, dict] = {}
    found: dict[str, list[dict]] = {}
    for m in messages(stream):
        if "osv" in m:
            osvs[m["osv"]["id"]] = m["osv"]
        elif "finding" in m:
            found.setdefault(m["finding"]["osv"], []).append(m["finding"])
    vulns = []
    for vid, findings in sorted(found.items()):
        entry = osvs.get(vid, {})
        if entry.get("withdrawn"):
            continue
        frames = [f["trace"][0] for f in findings if f.get("trace")]
        plain = [f for f in frames if not f.get("function")]
        symbols = sorted({f"{f.get('package', '')}.{_symbol(f)}" for f in frames if f.get("function")})
        level = "symbol" if symbols else "package" if len(plain) > 1 else "version"
        first = frames[0] if frames else {}
        vulns.append(Vuln(vid, tuple(sorted(entry.get("aliases", []))), entry.get("summary", ""),
                          first.get("module", ""), first.get("version", ""), findings[0].get("fixed_version", ""),
                          level, tuple(sorted({f["package"] for f in frames[1:] if f.get("package")}))
                          if level != "version" else (), tuple(symbols)))
    withdrawn = tuple(sorted(i for i, e in osvs.items() if e.get("withdrawn")))
    newest = max((e.get("modified", "") for e in osvs.values()), default="")
    return Scan(sha256, db, modified, newest, scanner, tuple(vulns), withdrawn, _stale(osvs.values(), go, db))


def _symbol(frame: dict) -> str:
    return f"{frame['receiver']}.{frame['function']}" if frame.get("receiver") else frame["function"]


def _semver(v: str) -> tuple[int, ...]:
    core = v.removeprefix("go").removeprefix("v").split("-")[0].split("+")[0]
    return tuple(int(p) if p.isdigit() else 0 for p in core.split("."))


def _stale(entries, go_version: str, db: str) -> str:
    """Why the database may be older than the binary's Go release: it names no fix in a release at least as new.

    Go's security releases fix the standard library every month or so, so a current database names fixes in
    the binary's Go minor release line or newer ones.
    """
    if not go_version:
        return ""
    fixes = [ev["fixed"] for e in entries for a in e.get("affected", [])
             if a.get("package", {}).get("name") == "stdlib" for r in a.get("ranges", [])
             for ev in r.get("events", []) if ev.get("fixed")]
    newest = max(fixes, key=_semver, default="")
    if newest and _semver(newest)[:2] >= _semver(go_version)[:2]:
        return ""
    return (f"database {db} names no Go standard library fix newer than {newest or '(none)'}, but gosu was built "
            f"with Go {go_version.removeprefix('go').removeprefix('v')}: it is likely older than that Go release, and a result "
            "against it proves only what it knew")


def review(result: Scan, found: Assessments, version: str, source: str) -> Scan:
    """The scan with the assessments that cover this binary and one of its present findings."""
    applied = tuple(a for v in result.applicable if (a := found.for_binary(v.id, version, source,
                                                                             result.gosu_sha256)))
    return dataclasses.replace(result, reviews=applied)


def unapplied(found: Assessments, scans: dict[str, Scan], binaries: dict) -> list[str]:
    """One line for each assessment that applied to nothing in this run, and why: it is named, never kept
    quietly (a review of a finding the scan no longer reports, or of other builds than these)."""
    used = {a.id for s in scans.values() for a in s.reviews}
    lines = []
    for a in found.items:
        if a.id in used:
            continue
        covered = [arch for arch, (_, sha, version, source) in binaries.items() if a.covers_binary(version, source, sha)]
        if covered:
            why = (f"the scan reports no function of it present in the gosu it covers here "
                   f"({', '.join(sorted(covered))}): stale, remove it or narrow its covers")
        else:
            built = sorted({f"gosu {version} ({source})" for _, _, version, source in binaries.values()})
            why = (f"it covers {', '.join(map(str, a.covers))}, not this run's {', '.join(built)}: not applied")
        lines.append(f"vulns: assessment {a.id} in {found.file}: {why}")
    for arch, s in sorted(scans.items()):
        for v in s.affected:
            other = found.named(v.id)
            if other and not s.review_of(v.id):
                lines.append(f"vulns: assessment {v.id} in {found.file} covers {', '.join(map(str, other.covers))}, "
                             f"not gosu {binaries[arch][2]} ({binaries[arch][3]}) {arch} "
                             f"sha256:{s.gosu_sha256[:12]}: not applied to it")
    return lines


def database(settings: Settings, log, why: dict | None = None) -> tuple[Settings, str] | None:
    """(settings naming the database scanned against, its modification time); None when there is none to use.

    An unreachable remote database gives way to the local copy (local.vuln_db) when the scan is not required;
    the line says so with the copy's date, and warns when it is older than MAX_AGE_DAYS.
    """
    modified = vulndb.modified(settings.db, settings.timeout, settings.required)
    if modified is not None:
        return settings, modified
    if settings.fallback:
        when = vulndb.modified(settings.fallback, settings.timeout, False)
        log.write(f"vulns: database {settings.db} cannot be reached: scanning against the local copy "
                  f"{settings.fallback} (local.vuln_db), as of {when}\n")
        old = vulndb.age_warning(when, settings.today or dt.date.today())
        if old:
            log.write(f"vulns: warning: {old}\n")
        return dataclasses.replace(settings, db=settings.fallback), when
    if why is not None:
        why["*"] = f"database {settings.db} could not be reached on {settings.today or dt.date.today()}"
    log.write(f"vulns: database {settings.db} cannot be reached: gosu was not scanned, so the images carry no "
              "VEX and no vulns label (give a local copy with --vuln-db or local.vuln_db, or set vuln.require to "
              "make this an error)\n")
    return None


def scan_all(settings: Settings, binaries: dict[str, tuple[Path, str, str, str]], log,
             why: dict | None = None) -> dict[str, Scan]:
    """{arch: Scan} for each gosu (arch -> (path, sha256, version, source)), reviewed, with one line each on `log`.

    An unreachable default database with no local copy is said in one line and gives no scan (no label, no
    VEX: nothing is claimed about a scan that did not happen), unless `settings.required`. `why`, if given,
    gets why each arch was not scanned (key "*": no arch was).
    """
    found = database(settings, log, why)
    if found is None:
        return {}
    settings, modified = found
    out = {}
    for arch, (path, sha256, version, source) in binaries.items():
        try:
            result = scan(settings, path, sha256, modified)
        except VulnError as e:
            if settings.required:
                raise
            log.write(f"vulns: gosu {version} {arch} not scanned: {e}\n")
            if why is not None:
                why[arch] = str(e)
            continue
        out[arch] = result = review(result, settings.assessments, version, source)
        log.write(f"vulns: gosu {version} {arch}: {result.summary()}{' (cached)' if result.cached else ''}\n")
        if result.stale:
            log.write(f"vulns: warning: {result.stale}\n")
    for line in unapplied(settings.assessments, out, binaries):
        log.write(line + "\n")
    return out
